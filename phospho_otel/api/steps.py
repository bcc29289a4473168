"""The steps of a task: the spans under its span (LLM calls, retrievals, tools...), read
from its stored trace, with their kind, model, tokens and cost.

``task_steps(trace, task_span_id, jaeger_ui_url)`` answers ``{"steps": [...], "tokens":
{...}, "cost": ..., "trace_url": ...}``: the task's own span first (``depth`` 0), then
its descendants depth-first in start order, each with its offset from the task's start.
A step's kind and model come from whichever convention its attributes follow
(``semconv.StepAttributes``, ``semconv.UsageAttributes``): OpenTelemetry GenAI,
OpenInference, OpenLLMetry (Traceloop) and Langfuse; its tokens and cost, and their
totals, by the rules the analyzer uses for a task's ``usage`` (``insights.usage``:
leaves only, so a wrapper that repeats its children's usage does not count twice).
"""

from __future__ import annotations

from typing import Any

from phospho_otel.insights.prices import PriceTable
from phospho_otel.insights.usage import (
    attributes_usage,
    scalar_attributes,
    subtree_usage,
    task_subtree,
)
from phospho_otel.model.records import TASK_STATUSES
from phospho_otel.semconv import StepAttributes
from phospho_otel.store.api import StoredTrace

__all__ = ["STEP_KINDS", "task_steps"]

STEP_KINDS = StepAttributes.KINDS
"""``kind`` of a step: what the span did, ``span`` when no convention says."""


def _kind(attrs: dict[str, Any]) -> str:
    for key in StepAttributes.KIND_KEYS:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return StepAttributes.KIND_BY_VALUE.get(value.lower(), "span")
    return "span"


def task_steps(trace: StoredTrace | None, task_span_id: bytes, task_start_ns: int,
               jaeger_ui_url: str | None = None,
               prices: PriceTable | None = None) -> dict[str, Any]:
    """The steps of the task whose span is ``task_span_id`` in ``trace`` (see the module
    doc), costs not reported priced from ``prices`` (default: the shipped table); no
    steps when the trace is not stored."""
    trace_url = (f"{jaeger_ui_url.rstrip('/')}/trace/{trace.trace_id.hex()}"
                 if jaeger_ui_url and trace is not None else None)
    subtree = task_subtree(trace, task_span_id)
    steps: list[dict[str, Any]] = []
    usages = []
    for span, depth, _ in subtree:
        attrs = scalar_attributes(span)
        usage = attributes_usage(attrs, prices)
        usages.append(usage)
        steps.append({
            "span_id": span.span_id.hex(), "name": span.name, "kind": _kind(attrs),
            "depth": depth,
            "offset_ms": round((span.start_time_unix_nano - task_start_ns) / 1e6, 3),
            "duration_ms": round(max(0, span.end_time_unix_nano
                                     - span.start_time_unix_nano) / 1e6, 3),
            "status": TASK_STATUSES[span.status.code] if span.status.code < 3 else "unset",
            "model": usage.model,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cost": usage.cost,
        })
    total = subtree_usage(subtree, usages)
    return {"steps": steps,
            "tokens": {"input": total.input_tokens, "output": total.output_tokens},
            "cost": round(total.cost, 6) if total.cost is not None else None,
            "model": total.model, "trace_url": trace_url}
