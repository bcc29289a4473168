"""With ``--token``: pages redirect to ``/login``; logging in with the token sets an
HttpOnly, SameSite=Strict cookie and the pages (and their export links) then work; a
wrong token shows an error; a state-changing POST without the CSRF token is refused."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page

from tests.dashboard import workload
from tests.dashboard.conftest import TOKEN, Api, LiveServer, NewPage, Screenshot
from tests.dashboard.pages import list_rows, open_page, wait_ready

PAGES = ["/insights", "/sessions", f"/sessions/{workload.SMALL_SESSION}", "/users",
         "/users/dana", "/tasks", "/tasks/t-small-1"]
TOKEN_FIELD = 'input[name="token"], input[type="password"]'
ERROR_TEXT = re.compile(r"invalid|wrong|incorrect|not valid|not the|denied|refused|does not match",
                        re.I)


def _path(url: str) -> str:
    return urlsplit(url).path


def _log_in(page: Page, token: str) -> None:
    field = page.locator(TOKEN_FIELD).first
    assert field.count() == 1, f"{page.url}: no token field"
    field.fill(token)
    with page.expect_navigation():
        field.press("Enter")


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_to_login(token_server: LiveServer, path: str) -> None:
    response = httpx.get(token_server.url + path, follow_redirects=False, trust_env=False)
    assert response.status_code in (302, 303, 307), response.status_code
    assert _path(response.headers["location"]) == "/login"


def test_api_still_wants_the_bearer_token(token_server: LiveServer) -> None:
    response = httpx.get(token_server.url + "/api/sessions", trust_env=False)
    assert response.status_code == 401


def test_login_page_renders(new_page: NewPage, token_server: LiveServer,
                            screenshot: Screenshot) -> None:
    page = new_page(token_server.url)
    open_page(page, "/login")
    assert page.locator(TOKEN_FIELD).count() >= 1
    screenshot(page, "login")


def test_login_sets_a_strict_httponly_cookie(new_page: NewPage, token_server: LiveServer,
                                             token_api: Api) -> None:
    page = new_page(token_server.url)
    page.goto("/sessions")
    assert _path(page.url) == "/login", "an unauthenticated page did not go to /login"
    _log_in(page, TOKEN)
    wait_ready(page)
    assert _path(page.url) != "/login", "logging in with the token did not leave /login"
    cookies = page.context.cookies()
    auth = [c for c in cookies if c.get("httpOnly") and c.get("sameSite") == "Strict"]
    assert auth, f"no HttpOnly SameSite=Strict cookie after login: {cookies}"
    assert all(c.get("value") != TOKEN for c in cookies), "the token itself is in a cookie"
    for path in PAGES:
        open_page(page, path)
        assert _path(page.url) == _path(path), f"{path} went to {page.url}"
    open_page(page, "/tasks")
    assert {r.id for r in list_rows(page, "tasks")} == {
        t["task_id"] for t in token_api("/api/tasks")["items"]}
    href = page.locator('a[href*="/api/tasks"][href*="format=csv"]').first.get_attribute(
        "href")
    assert href, "no CSV export link"
    response = page.request.get(href)  # the browser's cookie, no bearer token
    assert response.ok, f"the export link answers {response.status} when logged in"
    assert response.headers["content-type"].startswith("text/csv")


def test_wrong_token_shows_an_error(new_page: NewPage, token_server: LiveServer,
                                    screenshot: Screenshot) -> None:
    page = new_page(token_server.url, allowed_statuses=(401, 403))
    page.goto("/login")
    _log_in(page, "not-the-token")
    assert _path(page.url) == "/login"
    assert ERROR_TEXT.search(page.locator("body").inner_text()), "no error message shown"
    screenshot(page, "login-wrong-token")
    assert not [c for c in page.context.cookies() if c.get("httpOnly")
                and c.get("sameSite") == "Strict" and "csrf" not in c["name"].lower()], (
        "a wrong token got a session cookie")
    page.goto("/sessions")
    assert _path(page.url) == "/login"


def test_post_without_csrf_token_is_refused(new_page: NewPage, token_server: LiveServer,
                                            token_api: Api) -> None:
    """The feedback form's POST without its CSRF field: 403, nothing stored; with it: done."""
    page = new_page(token_server.url)
    page.goto("/login")
    _log_in(page, TOKEN)
    open_page(page, "/tasks/t-small-2")
    form = page.locator("form[data-feedback-form]")
    assert form.count() == 1, "no feedback form"
    action = form.get_attribute("action") or urlsplit(page.url).path
    fields = {el.get_attribute("name") or "": el.get_attribute("value") or ""
              for el in form.locator("input[type=hidden]").all()}
    csrf = [name for name in fields if "csrf" in name.lower()]
    assert csrf, f"the feedback form has no CSRF field: {fields}"
    without = {k: v for k, v in fields.items() if k not in csrf}
    body: dict[str, str | float | bool] = {**without, "flag": "failure", "notes": "forged"}
    refused = page.request.post(action, form=body, max_redirects=0)
    assert refused.status == 403, f"a POST without the CSRF token answered {refused.status}"
    assert token_api("/api/tasks/t-small-2")["flag"] is None
    real: dict[str, str | float | bool] = {**fields, "flag": "success", "notes": "real"}
    done = page.request.post(action, form=real, max_redirects=0)
    assert done.status < 400, f"the form's own POST answered {done.status}"
    logout = page.request.post("/logout", form={}, max_redirects=0)
    assert logout.status == 403, f"POST /logout without the CSRF token: {logout.status}"


def test_logout(new_page: NewPage, token_server: LiveServer) -> None:
    page = new_page(token_server.url)
    page.goto("/login")
    _log_in(page, TOKEN)
    open_page(page, "/sessions")
    button = page.locator('form[action="/logout"] button, form[action="/logout"] '
                          'input[type=submit]').first
    assert button.count() == 1, "no logout button"
    with page.expect_navigation():
        button.click()
    page.goto("/sessions")
    assert _path(page.url) == "/login", "still logged in after logging out"
