"""aggregator.rollup: per-batch session and user rollups, and extract's precomputed one."""

from __future__ import annotations

from ingest_helpers import BASE_NS, make_request, task_span

from phospho_otel.aggregator import extract
from phospho_otel.aggregator.rollup import rollup


class TestRollup:
    """The partial rows follow the merge rules of the schema."""

    def test_session_and_user_rows(self) -> None:
        """Counts add, min/max times, first/last by (start, task id), smallest user; the
        last flag is the last task's."""
        x = extract(
            make_request(
                [
                    task_span("b", session_id="s", user_id="u2", input="in b", start_ns=BASE_NS,
                              end_ns=BASE_NS + 5),
                    task_span("a", session_id="s", user_id="u1", input="in a", start_ns=BASE_NS,
                              end_ns=BASE_NS + 3, status_code=2),
                    task_span("c", session_id="s", user_id="u2", input="in c", output="out c",
                              start_ns=BASE_NS + 9, end_ns=BASE_NS + 10),
                    task_span("d", user_id="u1", start_ns=BASE_NS - 7, end_ns=BASE_NS - 1),
                ]
            )
        )
        r = rollup(x.tasks, {"b": ("success", 1, None, "user"), "c": ("failure", 2, None, "user")})
        assert r.sessions == {
            "s": ["u1", 3, BASE_NS, BASE_NS + 10, "a", BASE_NS, "in a",
                  "c", BASE_NS + 9, "in c", "out c", "unset", 1, 1, 1, "failure"],
        }
        assert r.users == {
            "u1": [2, 0, BASE_NS - 7, BASE_NS + 3, 0, 0, 1],
            "u2": [2, 0, BASE_NS, BASE_NS + 10, 1, 1, 0],
        }

    def test_extract_precomputes_without_feedback(self) -> None:
        """extract's rollup is the rollup of its tasks as if none had feedback."""
        x = extract(make_request([task_span("a", session_id="s"), task_span("b", session_id="s")]))
        assert x.rollup == rollup(x.tasks)
        assert x.rollup.sessions["s"][1] == 2

    def test_extract_skips_repeated_task_ids(self) -> None:
        """A task id twice in one request: no precomputed rollup (the store sorts it out)."""
        x = extract(make_request([task_span("a"), task_span("a", end_ns=BASE_NS + 7)]))
        assert x.rollup is None
        assert extract(make_request([])).rollup is None
