"""The public API end to end: real OTLP (HTTP/protobuf and gRPC) into a capture receiver,
every attribute checked."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider

import phospho_otel as phospho
from phospho_otel.semconv import SEMCONV_VERSION

from .otlp_sink import OtlpSink

PROTOCOLS = ["http/protobuf", "grpc"]


def only(spans: list[Any], **attrs: Any) -> Any:
    found = [s for s in spans if all(s.attributes.get(k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, [s.attributes for s in spans])
    return found[0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
class TestLog:
    """log() sends one task span with every attribute of the convention."""

    def test_log_sends_every_attribute(self, protocol: str, sink: OtlpSink,
                                       start_sdk: Callable[..., TracerProvider]) -> None:
        """The issue's example log() call arrives with exactly the expected attributes."""
        start_sdk(protocol, service_name="ignored-for-passed-provider")
        session_id = phospho.new_session()
        logged = phospho.log(
            input="What is the meaning of life?", output="42",
            raw_input={"chat_history": []},
            metadata={"system_prompt": "You are a helpful assistant.", "version_id": "1.0.0",
                      "generation_time": 0.1, "k": 3, "ok": True, "tags": ["a", "b"],
                      "none": None},
            session_id=session_id, user_id="roger@gmail.com",
        )
        assert phospho.flush(5)
        (span,) = sink.wait_for(1)
        assert span.attributes == {
            "phospho.span.type": "task",
            "phospho.semconv.version": SEMCONV_VERSION,
            "phospho.task.id": logged.task_id,
            "input.value": "What is the meaning of life?",
            "input.mime_type": "text/plain",
            "output.value": "42",
            "output.mime_type": "text/plain",
            "phospho.raw_input": '{"chat_history": []}',
            "session.id": session_id,
            "user.id": "roger@gmail.com",
            "phospho.metadata.system_prompt": "You are a helpful assistant.",
            "phospho.metadata.version_id": "1.0.0",
            "phospho.metadata.generation_time": 0.1,
            "phospho.metadata.k": 3,
            "phospho.metadata.ok": True,
            "phospho.metadata.tags": '["a", "b"]',
            "phospho.metadata.none": "null",
        }
        assert span.name == "task"
        assert span.span.kind == Span.SpanKind.SPAN_KIND_INTERNAL
        assert span.resource["service.name"] == "sdk-tests"
        assert span.scope_name == "phospho_otel"
        assert (logged.session_id, logged.user_id) == (session_id, "roger@gmail.com")
        assert (logged.trace_id, logged.span_id) == (span.trace_id, span.span_id)
        assert phospho.stats().exported == 1

    def test_given_task_id_name_and_generated_ids(self, protocol: str, sink: OtlpSink,
                                                  start_sdk: Callable[..., TracerProvider]
                                                  ) -> None:
        """A given task id is kept exactly; generated ids are unique; name= names the span."""
        start_sdk(protocol)
        a = phospho.log("q", task_id="my id/ é", name="answer")
        b = phospho.log("q")
        c = phospho.log("q")
        assert a.task_id == "my id/ é"
        assert b.task_id != c.task_id and len(b.task_id) == 32
        assert b.session_id is None and b.user_id is None
        spans = sink.wait_for(3)
        named = only(spans, **{"phospho.task.id": "my id/ é"})
        assert named.name == "answer"
        assert "session.id" not in named.attributes and "output.value" not in named.attributes


class TestTextRule:
    """Non-string input/output become readable text; raw payloads are kept as JSON."""

    def test_chat_payloads_and_objects(self, sink: OtlpSink,
                                       start_sdk: Callable[..., TracerProvider]) -> None:
        """Chat messages give the last user message, completions the first choice,
        dicts JSON; pydantic models, dataclasses and odd objects never raise."""

        class Model(pydantic.BaseModel):
            role: str
            content: str

        @dataclasses.dataclass
        class Point:
            x: int
            y: int

        class Odd:
            __slots__ = ()

        start_sdk()
        messages = [{"role": "system", "content": "be nice"},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": [{"type": "text", "text": "last"}]}]
        completion = {"choices": [{"message": {"role": "assistant", "content": "hi!"}}]}
        t1 = phospho.log(messages, completion)
        t2 = phospho.log({"messages": [Model(role="user", content="via pydantic")]},
                         {"answer": Point(1, 2), "odd": Odd(), "set": {3}})
        t3 = phospho.log(12, b"bytes out")
        t4 = phospho.log("q", raw_input=json.dumps({"model": "m"}), raw_output="plain text")
        spans = sink.wait_for(4)
        s4 = only(spans, **{"phospho.task.id": t4.task_id}).attributes
        assert s4["phospho.raw_input"] == '{"model": "m"}'  # JSON text kept as is
        assert s4["phospho.raw_output"] == '"plain text"'  # other strings JSON-encoded
        s1 = only(spans, **{"phospho.task.id": t1.task_id}).attributes
        assert (s1["input.value"], s1["input.mime_type"]) == ("last", "text/plain")
        assert (s1["output.value"], s1["output.mime_type"]) == ("hi!", "text/plain")
        assert json.loads(s1["phospho.raw_input"]) == messages
        assert json.loads(s1["phospho.raw_output"]) == completion
        s2 = only(spans, **{"phospho.task.id": t2.task_id}).attributes
        assert s2["input.value"] == "via pydantic"
        assert s2["output.mime_type"] == "application/json"
        out = json.loads(s2["output.value"])
        assert out["answer"] == {"x": 1, "y": 2} and out["set"] == [3]
        assert out["odd"].startswith("<")
        assert json.loads(s2["phospho.raw_input"]) == {
            "messages": [{"role": "user", "content": "via pydantic"}]}
        s3 = only(spans, **{"phospho.task.id": t3.task_id}).attributes
        assert (s3["input.value"], s3["input.mime_type"]) == ("12", "application/json")
        assert s3["output.value"] == "bytes out"


class TestBadInput:
    """Bad arguments raise at the call site and lose nothing else."""

    def test_errors(self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider]) -> None:
        """Missing input, non-mapping metadata, bad flag/ids raise TypeError/ValueError."""
        start_sdk()
        with pytest.raises(ValueError, match="input is required"):
            phospho.log()
        with pytest.raises(ValueError, match="input is required"):
            phospho.log(None)
        with pytest.raises(TypeError, match="metadata must be a mapping"):
            phospho.log("x", metadata=["a"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="task_id"):
            phospho.log("x", task_id=12)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="session_id"):
            phospho.log("x", session_id=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="flag must be"):
            phospho.user_feedback("t", flag="meh")
        with pytest.raises(TypeError, match="task_id"):
            phospho.user_feedback("")
        with pytest.raises(TypeError, match="source"):
            phospho.user_feedback("t", source="")
        with pytest.raises(TypeError, match="metadata"):
            phospho.session(metadata="x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="input="):
            with phospho.task():
                pass
        ok = phospho.log("still works")
        spans = sink.wait_for(1)
        assert [s.attributes["phospho.task.id"] for s in spans] == [ok.task_id]


@pytest.mark.parametrize("protocol", PROTOCOLS)
class TestSessionAndTask:
    """session() stamps every span inside it; task() spans code, children inside."""

    def test_plain_tracer_span_inside_session(self, protocol: str, sink: OtlpSink,
                                              start_sdk: Callable[..., TracerProvider]) -> None:
        """A span of a plain OTel tracer inside `with session(...)` carries session.id,
        user.id and the session metadata; spans outside do not."""
        provider = start_sdk(protocol)
        tracer = provider.get_tracer("third.party")
        with phospho.session(user_id="roger@gmail.com", metadata={"plan": "pro"}) as s:
            with tracer.start_as_current_span("retrieval"):
                pass
        with tracer.start_as_current_span("outside"):
            pass
        spans = sink.wait_for(2)
        inside = only(spans, **{"session.id": s.session_id})
        assert inside.name == "retrieval" and inside.scope_name == "third.party"
        assert inside.attributes == {"session.id": s.session_id, "user.id": "roger@gmail.com",
                                     "phospho.metadata.plan": "pro"}
        outside = next(sp for sp in spans if sp.name == "outside")
        assert outside.attributes == {}
        assert s.session_id is not None and len(s.session_id) == 32

    def test_task_context_manager(self, protocol: str, sink: OtlpSink,
                                  start_sdk: Callable[..., TracerProvider]) -> None:
        """The issue's example: task inside session, child spans, output, feedback linked."""
        provider = start_sdk(protocol)
        tracer = provider.get_tracer("retriever")
        with phospho.session(user_id="roger@gmail.com") as s:
            with phospho.task(input="Fetch documents", metadata={"k": 3}) as t:
                with tracer.start_as_current_span("retrieve"):
                    docs = ["a", "b"]
                t.set_output(f"{len(docs)} documents")
        phospho.user_feedback(task_id=t.task_id, flag="success", notes="thumbs up")
        spans = sink.wait_for(3)
        task_span = only(spans, **{"phospho.span.type": "task"})
        assert task_span.attributes == {
            "phospho.span.type": "task",
            "phospho.semconv.version": SEMCONV_VERSION,
            "phospho.task.id": t.task_id,
            "input.value": "Fetch documents",
            "input.mime_type": "text/plain",
            "output.value": "2 documents",
            "output.mime_type": "text/plain",
            "session.id": s.session_id,
            "user.id": "roger@gmail.com",
            "phospho.metadata.k": 3,
        }
        assert task_span.name == "task"
        child = next(sp for sp in spans if sp.name == "retrieve")
        assert child.parent_span_id == task_span.span_id
        assert child.trace_id == task_span.trace_id
        assert child.attributes["session.id"] == s.session_id
        feedback = only(spans, **{"phospho.span.type": "feedback"})
        assert feedback.name == "feedback"
        assert feedback.attributes == {
            "phospho.span.type": "feedback",
            "phospho.semconv.version": SEMCONV_VERSION,
            "phospho.task.id": t.task_id,
            "phospho.feedback.flag": "success",
            "phospho.feedback.notes": "thumbs up",
            "phospho.feedback.source": "user",
        }
        (link,) = feedback.span.links
        assert (link.trace_id.hex(), link.span_id.hex()) == (task_span.trace_id,
                                                              task_span.span_id)

    def test_error_status_and_exception_event(self, protocol: str, sink: OtlpSink,
                                              start_sdk: Callable[..., TracerProvider]) -> None:
        """An exception marks the task span as an error, is recorded, and is re-raised."""
        start_sdk(protocol)

        class Boom(Exception):
            pass

        error = Boom("kaboom")
        with pytest.raises(Boom) as raised:
            with phospho.task(input="x", name="failing step"):
                raise error
        assert raised.value is error
        (span,) = sink.wait_for(1)
        assert span.name == "failing step"
        assert span.span.status.code == Status.STATUS_CODE_ERROR
        assert "kaboom" in span.span.status.message
        (event,) = span.span.events
        assert event.name == "exception"
        from .otlp_sink import attributes_of

        assert attributes_of(event.attributes)["exception.message"] == "kaboom"


class TestDecorator:
    """@task on functions, coroutines, generators and async generators."""

    def test_all_function_kinds(self, sink: OtlpSink,
                                start_sdk: Callable[..., TracerProvider]) -> None:
        """Operation name = function name; input from the arguments; output from the
        return value or the joined chunks; errors recorded and re-raised."""
        start_sdk()

        @phospho.task
        def answer(question: str) -> str:
            return question.upper()

        @phospho.task(name="ask-async", metadata={"v": 2})
        async def ask(question: str, temperature: float = 0.5) -> dict[str, Any]:
            return {"a": question}

        @phospho.task
        def stream(n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                yield f"c{i} "

        @phospho.task
        async def astream(prompt: str):  # type: ignore[no-untyped-def]
            for word in prompt.split():
                yield {"choices": [{"delta": {"content": word}}]}

        @phospho.task
        def broken(x: int) -> None:
            raise KeyError(x)

        assert answer("hi") == "HI"
        assert asyncio.run(ask("q")) == {"a": "q"}
        assert list(stream(3)) == ["c0 ", "c1 ", "c2 "]

        async def consume() -> list[Any]:
            return [c async for c in astream("a b")]

        assert len(asyncio.run(consume())) == 2
        with pytest.raises(KeyError):
            broken(7)
        spans = sink.wait_for(5)
        by_name = {s.name: s for s in spans}
        assert set(by_name) >= {"TestDecorator.test_all_function_kinds.answer",
                                "ask-async"}
        a = by_name["TestDecorator.test_all_function_kinds.answer"].attributes
        assert (a["input.value"], a["output.value"]) == ("hi", "HI")
        b = by_name["ask-async"].attributes
        assert json.loads(b["input.value"]) == {"question": "q", "temperature": 0.5}
        assert json.loads(b["output.value"]) == {"a": "q"}
        assert b["phospho.metadata.v"] == 2
        g = next(s for s in spans if s.name.endswith("stream") and "astream" not in s.name)
        assert (g.attributes["input.value"], g.attributes["output.value"]) == ("3", "c0 c1 c2 ")
        ag = next(s for s in spans if s.name.endswith("astream"))
        assert ag.attributes["output.value"] == "ab"
        br = next(s for s in spans if s.name.endswith("broken"))
        assert br.span.status.code == Status.STATUS_CODE_ERROR

    def test_async_session_and_concurrency(self, sink: OtlpSink,
                                           start_sdk: Callable[..., TracerProvider]) -> None:
        """Concurrent asyncio tasks each keep their own session scope."""
        start_sdk()

        async def one(user: str) -> str:
            async with phospho.session(user_id=user) as s:
                await asyncio.sleep(0.01)
                async with phospho.task(input=user):
                    await asyncio.sleep(0.01)
                return s.session_id  # type: ignore[return-value]

        async def main() -> list[str]:
            return await asyncio.gather(*(one(f"u{i}") for i in range(5)))

        sessions = asyncio.run(main())
        spans = sink.wait_for(5)
        for i, sid in enumerate(sessions):
            span = only(spans, **{"input.value": f"u{i}"})
            assert span.attributes["session.id"] == sid
            assert span.attributes["user.id"] == f"u{i}"


class TestNestingAndBaggage:
    """Nested sessions inherit; baggage carries the session across a process boundary."""

    def test_nested_and_explicit(self, sink: OtlpSink,
                                 start_sdk: Callable[..., TracerProvider]) -> None:
        """Inner session inherits user and metadata; explicit log() ids win."""
        start_sdk()
        with phospho.session("outer", user_id="u", metadata={"a": 1}):
            with phospho.session("inner", metadata={"b": 2}):
                inner = phospho.log("in")
            explicit = phospho.log("x", session_id="other", user_id="v")
        spans = sink.wait_for(2)
        s_in = only(spans, **{"phospho.task.id": inner.task_id}).attributes
        assert (s_in["session.id"], s_in["user.id"]) == ("inner", "u")
        assert (s_in["phospho.metadata.a"], s_in["phospho.metadata.b"]) == (1, 2)
        s_ex = only(spans, **{"phospho.task.id": explicit.task_id}).attributes
        assert (s_ex["session.id"], s_ex["user.id"]) == ("other", "v")

    def test_baggage_crosses_services(self, sink: OtlpSink,
                                      start_sdk: Callable[..., TracerProvider]) -> None:
        """With baggage=True, injected headers carry session/user to another service."""
        from opentelemetry import context as otel_context
        from opentelemetry.propagate import extract, inject

        provider = start_sdk()
        carrier: dict[str, str] = {}
        with phospho.session("s-1", user_id="u-1", baggage=True):
            inject(carrier)
        assert "baggage" in carrier
        token = otel_context.attach(extract(carrier))  # the "other service"
        try:
            with provider.get_tracer("svc-b").start_as_current_span("handler"):
                pass
        finally:
            otel_context.detach(token)
        (span,) = sink.wait_for(1)
        assert span.attributes == {"session.id": "s-1", "user.id": "u-1"}


class TestInit:
    """init(): env vars, idempotence, attaching to a provider, clear errors."""

    def test_env_vars_and_global_provider(self, sink: OtlpSink,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_* variables choose endpoint, protocol, headers, compression, service name;
        with no SDK provider, init() installs one globally and plain tracers export."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.grpc_endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20tok,x-a=b")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "my-llm-app")
        phospho.init(schedule_delay_s=0.02)
        phospho.init()  # twice: no second processor, nothing exported twice
        with trace.get_tracer("plain").start_as_current_span("global"):
            pass
        phospho.log("hello")
        spans = sink.wait_for(2)
        assert phospho.flush(5)
        assert len(sink.spans()) == 2
        assert {s.resource["service.name"] for s in spans} == {"my-llm-app"}
        assert sink.headers[0]["authorization"] == "Bearer tok"
        assert sink.headers[0]["x-a"] == "b"

    def test_traces_endpoint_used_as_is(self, sink: OtlpSink,
                                        monkeypatch: pytest.MonkeyPatch,
                                        provider: TracerProvider) -> None:
        """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT wins and is used as the full URL."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                           sink.http_endpoint + "/v1/traces")
        phospho.init(tracer_provider=provider, schedule_delay_s=0.02, compression="gzip")
        phospho.log("x")
        assert len(sink.wait_for(1)) == 1

    def test_shutdown_then_init_again(self, sink: OtlpSink, provider: TracerProvider) -> None:
        """shutdown() then init() works; spans are exported once each."""
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider)
        phospho.log("one")
        phospho.shutdown()
        assert sink.span_count() == 1
        phospho.init(endpoint=sink.grpc_endpoint, protocol="grpc", tracer_provider=provider,
                     schedule_delay_s=0.02)
        phospho.log("two")
        assert phospho.flush(5)
        assert sorted(s.attributes["input.value"] for s in sink.spans()) == ["one", "two"]

    @pytest.mark.parametrize("endpoint", ["not a url", "ftp://host:1", "http://:4318",
                                          "http://host:99999", "http://host:0", ""])
    def test_unusable_endpoint(self, endpoint: str) -> None:
        """An unusable endpoint fails at init with a message naming it."""
        with pytest.raises(phospho.ConfigurationError) as raised:
            phospho.init(endpoint=endpoint)
        assert repr(endpoint) in str(raised.value)
        assert isinstance(raised.value, ValueError)

    def test_unusable_env_endpoint_and_bad_args(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad endpoint variable also fails at init; bad arguments raise ValueError."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")
        with pytest.raises(ValueError, match="'localhost:4318'"):
            phospho.init()
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        with pytest.raises(ValueError, match="protocol"):
            phospho.init(protocol="http/json")
        with pytest.raises(ValueError, match="max_queue_size"):
            phospho.init(max_queue_size=0)
        with pytest.raises(ValueError, match="tracer_provider"):
            phospho.init(tracer_provider=object())  # type: ignore[arg-type]

    def test_bad_env_values_fall_back(self, sink: OtlpSink, provider: TracerProvider,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """Bad numeric/protocol variables are ignored with a warning, defaults used."""
        monkeypatch.setenv("PHOSPHO_MAX_QUEUE_SIZE", "lots")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider)
        from phospho_otel.sdk._client import current_settings

        settings = current_settings()
        assert settings is not None
        assert (settings.max_queue_size, settings.protocol) == (100_000, "http/protobuf")


class TestAttach:
    """init() attaches to an app's existing SDK provider instead of replacing it."""

    def test_attaches_to_global_provider(self, sink: OtlpSink) -> None:
        """The app's own processor keeps working and sees our spans; ours exports them."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        app_provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
        memory = InMemorySpanExporter()
        app_provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(app_provider)
        phospho.init(endpoint=sink.http_endpoint, schedule_delay_s=0.02)
        assert trace.get_tracer_provider() is app_provider
        with phospho.session(user_id="u"):
            logged = phospho.log("hello")
            with trace.get_tracer("app").start_as_current_span("app-span"):
                pass
        spans = sink.wait_for(2)
        assert {s.resource["service.name"] for s in spans} == {"app"}
        assert {s.name for s in memory.get_finished_spans()} == {"task", "app-span"}
        task_span = only(spans, **{"phospho.task.id": logged.task_id})
        assert task_span.attributes["user.id"] == "u"
