"""What the benchmarks share: timers, percentiles, OTLP builders, and writing a data set
through a store's own write path.

Imported by the benchmark scripts as ``_common`` (``python benchmarks/bench_X.py`` puts
this directory first on ``sys.path``). Nothing here measures anything by itself.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.model.records import (
    Extraction,
    FeedbackRecord,
    Origin,
    SpanRecord,
    TaskRecord,
)
from phospho_otel.semconv import (
    SEMCONV_VERSION,
    IOAttributes,
    PhosphoAttributes,
    SessionAttributes,
    UserAttributes,
)
from phospho_otel.store.api import StoreWriter

__all__ = [
    "BASE_NS",
    "SEC",
    "any_value",
    "attrs",
    "export_request",
    "feedback_attributes",
    "kv",
    "p95",
    "pct",
    "records_extraction",
    "task_attributes",
    "timed",
    "write_data_set",
]

BASE_NS = 1_764_000_000 * 1_000_000_000
"""The benchmarks' time origin (ns): 2025-11-24T16:00:00Z."""
SEC = 1_000_000_000


# ----------------------------------------------------------------------- timers, percentiles


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls of ``fn``."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def p95(samples: Sequence[float]) -> float:
    """The 95th percentile, interpolated (``statistics.quantiles``, inclusive method).

    Not ``pct(samples, 95)``: each benchmark keeps the percentile its earlier figures
    were computed with, so that old and new figures compare."""
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


# ----------------------------------------------------------------------- OTLP builders


def any_value(value: object) -> AnyValue:
    """An OTLP ``AnyValue`` of a bool, int or float; text of anything else."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def kv(key: str, value: object) -> KeyValue:
    """One OTLP attribute (``any_value``)."""
    return KeyValue(key=key, value=any_value(value))


def attrs(values: Mapping[str, object]) -> list[KeyValue]:
    """OTLP attributes of a mapping, in its order."""
    return [kv(k, v) for k, v in values.items()]


def task_attributes(
    task_id: str,
    *,
    input: str,
    output: str,
    session_id: str,
    user_id: str,
    semconv_version: bool = False,
    metadata: Mapping[str, object] | None = None,
) -> list[KeyValue]:
    """A task span's attributes, our convention: span type, (semconv version), task id,
    input, output, session, user, (``phospho.metadata.*``), in this order."""
    values: dict[str, object] = {PhosphoAttributes.SPAN_TYPE: "task"}
    if semconv_version:
        values[PhosphoAttributes.SEMCONV_VERSION] = SEMCONV_VERSION
    values[PhosphoAttributes.TASK_ID] = task_id
    values[IOAttributes.INPUT_VALUE] = input
    values[IOAttributes.OUTPUT_VALUE] = output
    values[SessionAttributes.SESSION_ID] = session_id
    values[UserAttributes.USER_ID] = user_id
    for key, value in (metadata or {}).items():
        values[PhosphoAttributes.METADATA_PREFIX + key] = value
    return attrs(values)


def feedback_attributes(task_id: str, flag: str) -> list[KeyValue]:
    """A feedback span's attributes, our convention."""
    return attrs({
        PhosphoAttributes.SPAN_TYPE: "feedback",
        PhosphoAttributes.TASK_ID: task_id,
        PhosphoAttributes.FEEDBACK_FLAG: flag,
    })


def export_request(spans: Iterable[Span], *, service: str,
                   scope: str | None = None) -> ExportTraceServiceRequest:
    """One export request: the spans under one resource (``service.name``) and one
    instrumentation scope (named ``scope``, or unnamed)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", service))
    scope_spans = resource_spans.scope_spans.add()
    if scope is not None:
        scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return request


# ----------------------------------------------------------------------- data sets


def records_extraction(
    *,
    tasks: Sequence[TaskRecord] = (),
    feedback: Sequence[FeedbackRecord] = (),
    groups: Sequence[tuple[Origin, list[SpanRecord]]] = (),
) -> Extraction:
    """An ``Extraction`` of records built directly (not extracted from OTLP), for a
    store's write path: the tasks and feedback need no span of their own (the store keeps
    the spans of ``groups`` only), and the rollups are left to the store (``rollup`` is
    None), which computes them with ``model.rollup``."""
    return Extraction(
        groups=list(groups),
        tasks=list(tasks),
        feedback=list(feedback),
        span_count=sum(len(spans) for _, spans in groups),
        rejected_spans=0,
        counters={},
        problems=[],
        rollup=None,
    )


def write_data_set(store: StoreWriter, extractions: Iterable[Extraction],
                   per_write: int = 1) -> int:
    """Write the extractions through ``store.write``, ``per_write`` per transaction;
    returns the number of writes."""
    writes = 0
    batch: list[Extraction] = []
    for extraction in extractions:
        batch.append(extraction)
        if len(batch) >= per_write:
            store.write(batch)
            writes += 1
            batch = []
    if batch:
        store.write(batch)
        writes += 1
    return writes
