"""Human feedback from a task page: marking a task success or failure with notes stores
feedback with source ``owner``, shown by the API and by every page at once."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page

from tests.dashboard import workload
from tests.dashboard.conftest import Api, Screenshot
from tests.dashboard.pages import list_rows, open_page, value_matches, wait_ready

FORM = "form[data-feedback-form]"


def _wait_for(api: Api, task_id: str, flag: str, notes: str,
              timeout_s: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task: dict[str, Any] = api(f"/api/tasks/{task_id}")
        if (task["flag"], task["notes"], task["flag_source"]) == (flag, notes, "owner"):
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"feedback not in the API after {timeout_s}s: "
                                 f"{task['flag']=}, {task['notes']=}, {task['flag_source']=}")
        time.sleep(0.1)


def _give(page: Page, flag: str, notes: str) -> None:
    form = page.locator(FORM)
    assert form.count() == 1, f"{page.url}: no {FORM}"
    form.locator('[name="notes"]').fill(notes)
    form.locator(f'button[name="flag"][value="{flag}"]').click()
    page.wait_for_load_state()
    wait_ready(page)


def _cell(page: Page, list_name: str, row_id: str, field: str) -> str | None:
    for row in list_rows(page, list_name):
        if row.id == row_id:
            return dict(row.cells).get(field)
    raise AssertionError(f"{page.url}: no row {row_id} in {list_name}")


def test_feedback_from_the_task_page(page: Page, api: Api, screenshot: Screenshot) -> None:
    task_id = workload.FEEDBACK_TASK
    before = api(f"/api/tasks/{task_id}")
    assert before["flag"] is None, "the data set flags this task already"
    session_id = before["session_id"]
    failures = api(f"/api/sessions/{session_id}")["failure_count"]

    open_page(page, f"/tasks/{task_id}")
    _give(page, "failure", "the hours are wrong")
    _wait_for(api, task_id, "failure", "the hours are wrong")
    screenshot(page, "task-after-feedback")
    assert api(f"/api/sessions/{session_id}")["failure_count"] == failures + 1

    # every view at once: the task page, the tasks list, the session page
    open_page(page, f"/tasks/{task_id}")
    assert "the hours are wrong" in page.locator("body").inner_text()
    open_page(page, f"/tasks?session_id={session_id}")
    assert value_matches("failure", _cell(page, "tasks", task_id, "flag"))
    open_page(page, f"/sessions/{session_id}")
    turn = page.locator(f'[data-list="session-tasks"] [data-id="{task_id}"]')
    assert "the hours are wrong" in turn.inner_text(), "the session page misses the notes"

    # the latest feedback wins
    open_page(page, f"/tasks/{task_id}")
    _give(page, "success", "fixed after checking")
    _wait_for(api, task_id, "success", "fixed after checking")
    assert api(f"/api/sessions/{session_id}")["failure_count"] == failures
    open_page(page, "/tasks?flag=success")
    assert task_id in [r.id for r in list_rows(page, "tasks")]
