"""SDK: strings that are not valid Unicode (lone surrogates) reach the aggregator with
U+FFFD in their place, with one warning and no traceback, counted in ``stats()``
(issue 9, defect 11.1)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

import phospho_otel as phospho
from phospho_otel.server import AggregatorServer, ServerSettings
from tests.sdk.otlp_sink import OtlpSink

BAD = "\ud800"  # a lone high surrogate: a valid Python str, not encodable as UTF-8
FFFD = "\ufffd"


pytestmark = pytest.mark.usefixtures("clean_sdk")


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    path: Path = tmp_path_factory.mktemp("surrogates") / "agg.db"
    with AggregatorServer(ServerSettings(store=str(path), http_port=0, grpc_port=0)) as server:
        yield server


def _task(client: httpx.Client, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/api/tasks/{quote(task_id, safe='')}")
        if reply.status_code == 200:
            task: dict[str, Any] = reply.json()
            return task
        if time.monotonic() > deadline:
            pytest.fail(f"task {task_id!r} not in the views after {timeout}s: "
                        f"{reply.status_code} {reply.text[:200]}")
        time.sleep(0.05)


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


class TestLoneSurrogatesEndToEnd:
    """A task whose strings hold lone surrogates arrives in the aggregator's views, every
    string with U+FFFD in place of each lone surrogate."""

    @pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
    def test_task_with_lone_surrogates_is_in_the_views(
        self, aggregator: AggregatorServer, protocol: str, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """input, output, raw payloads, metadata keys and values, session and user ids,
        task id and name: all repaired; the task and its session are in the views; one
        warning, no traceback; ``stats().repaired`` counts the repairs."""
        port = aggregator.grpc_port if protocol == "grpc" else aggregator.http_port
        phospho.init(endpoint=f"http://127.0.0.1:{port}", protocol=protocol,
                     tracer_provider=TracerProvider(), schedule_delay_s=0.02)
        suffix = protocol.split("/")[0]
        caplog.set_level(logging.WARNING)
        logged = phospho.log(
            input=f"in {BAD} put", output=f"out{BAD}",
            raw_input={"messages": [{"role": "system", "content": BAD}]},
            raw_output=f"not json {BAD}",
            metadata={f"key{BAD}": f"value{BAD}", "list": [BAD, "ok"], "n": 1},
            task_id=f"task-{suffix}-{BAD}", session_id=f"session-{suffix}-{BAD}",
            user_id=f"user{BAD}", name=f"name{BAD}",
        )
        assert phospho.flush(10)
        stats = phospho.stats()
        assert stats.exported == 1 and stats.failed == 0
        assert stats.repaired >= 1
        with httpx.Client(base_url=aggregator.http_url) as client:
            task = _task(client, f"task-{suffix}-{FFFD}")
            assert task["input"] == f"in {FFFD} put"
            assert task["output"] == f"out{FFFD}"
            assert task["raw_input"] == {"messages": [{"role": "system", "content": FFFD}]}
            assert task["raw_output"] == f"not json {FFFD}"
            assert task["metadata"] == {f"key{FFFD}": f"value{FFFD}",
                                        "list": f'["{FFFD}", "ok"]', "n": 1}
            assert (task["session_id"], task["user_id"], task["name"]) == (
                f"session-{suffix}-{FFFD}", f"user{FFFD}", f"name{FFFD}")
            session = client.get(f"/api/sessions/{quote(task['session_id'], safe='')}")
            assert session.status_code == 200, session.text
            assert [t["task_id"] for t in session.json()["tasks"]] == [task["task_id"]]
        assert logged.task_id == f"task-{suffix}-{BAD}"  # the caller's value, as given
        assert _tracebacks(caplog) == []
        warnings = [r for r in caplog.records if r.name.startswith("phospho_otel")
                    and "surrogate" in r.getMessage()]
        assert len(warnings) <= 1

    def test_task_context_manager_with_lone_surrogates(
        self, aggregator: AggregatorServer, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """``task()``: input, streamed output, set_metadata and an exception message with
        lone surrogates; the task is in the views."""
        phospho.init(endpoint=aggregator.http_url, tracer_provider=TracerProvider(),
                     schedule_delay_s=0.02)
        with pytest.raises(ValueError), phospho.task(input=f"q{BAD}",
                                                      task_id=f"ctx-{BAD}") as run:
            run.set_output(f"a{BAD}")
            run.set_metadata({"m": f"x{BAD}"})
            raise ValueError(f"broken {BAD}")
        assert phospho.flush(10)
        with httpx.Client(base_url=aggregator.http_url) as client:
            task = _task(client, f"ctx-{FFFD}")
        assert (task["input"], task["output"], task["status"]) == (
            f"q{FFFD}", f"a{FFFD}", "error")
        assert task["metadata"] == {"m": f"x{FFFD}"}
        assert _tracebacks(caplog) == []


class TestEncoderNeverRaisesOnText:
    """Spans of any tracer: a lone surrogate anywhere in a span (name, attribute keys
    and values, arrays, events, links, status, resource, scope) is repaired, never
    dropped, with at most one warning per process and no traceback."""

    def test_third_party_span_with_lone_surrogates(
        self, caplog: pytest.LogCaptureFixture,
    ) -> None:
        from opentelemetry.sdk.resources import Resource

        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        provider = TracerProvider(resource=Resource({"service.name": f"svc{BAD}"}))
        with OtlpSink() as sink:
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                         schedule_delay_s=0.02)
            tracer = provider.get_tracer(f"scope{BAD}", f"1.{BAD}")
            for i in range(3):
                with tracer.start_as_current_span(f"span{BAD}{i}", attributes={
                    f"k{BAD}": f"v{BAD}", "arr": (f"a{BAD}", "b"), "ok": "fine",
                }) as span:
                    span.add_event(f"event{BAD}", {"e": f"x{BAD}"})
                    span.set_status(Status(StatusCode.ERROR, f"bad {BAD}"))
            assert phospho.flush(10)
            spans = sink.wait_for(3)
        assert phospho.stats().exported == 3 and phospho.stats().failed == 0
        assert phospho.stats().repaired > 0
        names = sorted(s.name for s in spans)
        assert names == [f"span{FFFD}{i}" for i in range(3)]
        for s in spans:
            assert s.attributes == {f"k{FFFD}": f"v{FFFD}", "arr": (f"a{FFFD}", "b"),
                                    "ok": "fine"}
            assert s.resource["service.name"] == f"svc{FFFD}"
            assert s.scope_name == f"scope{FFFD}"
            assert s.span.events[0].name == f"event{FFFD}"
            assert s.span.status.message == f"bad {FFFD}"
        assert _tracebacks(caplog) == []
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) <= 1, [r.getMessage() for r in warnings]

    def test_surrogate_pairs_become_their_character(self) -> None:
        """A well-formed pair written as two code points (``"\\ud83d\\ude00"``) arrives
        as the character it encodes; only unpaired halves become U+FFFD."""
        with OtlpSink() as sink:
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=TracerProvider(),
                         schedule_delay_s=0.02)
            phospho.log("smile \ud83d\ude00, half \ude00\ud83d")
            assert phospho.flush(10)
            (span,) = sink.wait_for(1)
        assert span.attributes["input.value"] == f"smile \U0001f600, half {FFFD}{FFFD}"

    def test_truncated_value_with_lone_surrogates(self) -> None:
        """A value cut to ``max_attribute_bytes`` keeps U+FFFD for its lone surrogates
        (not silently removed) and stays within the limit."""
        with OtlpSink() as sink:
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=TracerProvider(),
                         schedule_delay_s=0.02, max_attribute_bytes=64)
            phospho.log(("ab" + BAD) * 100)
            assert phospho.flush(10)
            (span,) = sink.wait_for(1)
        value = span.attributes["input.value"]
        assert value.startswith(f"ab{FFFD}ab{FFFD}") and len(value.encode()) <= 64
        assert span.attributes["phospho.truncated"] == ("input.value",)
