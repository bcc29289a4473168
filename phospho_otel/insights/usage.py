"""Tokens and cost: what a task's LLM calls used, read from the spans of its stored trace.
Pure functions, no I/O: the analyzer reads the traces and stores each task's ``Usage``
(``model.analysis``), the sums per session (``endings.decide_session``) and per user
(``store.api.UserFacts``); the steps view (``api.steps``) shows each span's.

**A span's own usage** (``span_usage``) comes from the attributes of whichever convention
it follows (``semconv.UsageAttributes``): OpenTelemetry GenAI ``gen_ai.usage.*``,
OpenInference ``llm.token_count.*`` and ``llm.cost.total``, OpenLLMetry (Traceloop)
``llm.usage.*``, Langfuse's ``usage_details`` / ``cost_details`` JSON. For each figure the
first key the span carries is read; a number written as text counts, a bool does not. Its
model is the first of ``UsageAttributes.MODEL_KEYS`` it carries (the model that answered,
``gen_ai.response.model``, before the one asked for). Its **cost** is the one it reports;
when it reports none, its tokens priced by its model (``insights.prices``: the shipped
table, or the insights file's ``[prices]`` over it); None when the model has no price.

**A task's usage** (``task_usage``) sums the usage of its span and of the spans below it,
**leaves only**: a span's own figures count only when no span of its subtree reports any,
so a wrapper (an agent, a chain, a Langfuse trace) that repeats its children's totals is
not counted twice. Spans outside the task's subtree (another task of the same trace, an
unrelated root) are not counted. Each figure is summed over the spans that report it and
is None when none does. Its model is the one most spans of the subtree name (the
first of them, depth first, on a tie).

**Sums over tasks** (``sum_usage``): the same, figure by figure, None where no task
reported it, and the model most tasks used; ``None`` altogether when no task reported
anything.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.insights.prices import PriceTable, default_prices
from phospho_otel.model.analysis import Usage
from phospho_otel.semconv import UsageAttributes
from phospho_otel.store.api import StoredTrace

__all__ = [
    "NO_USAGE",
    "USAGE_KEYS",
    "SubtreeSpan",
    "attributes_usage",
    "most_used",
    "scalar_attributes",
    "span_usage",
    "subtree_usage",
    "sum_usage",
    "task_subtree",
    "task_usage",
]

NO_USAGE = Usage(None, None, None)
"""The usage of a span or task that reports none."""
USAGE_KEYS = frozenset((*UsageAttributes.INPUT_TOKEN_KEYS, *UsageAttributes.OUTPUT_TOKEN_KEYS,
                        *UsageAttributes.COST_KEYS, UsageAttributes.LANGFUSE_USAGE_DETAILS,
                        UsageAttributes.LANGFUSE_COST_DETAILS, *UsageAttributes.MODEL_KEYS))
"""Every attribute key a span's usage (and model) is read from."""


class SubtreeSpan(NamedTuple):
    """One span of a task's subtree (``task_subtree``)."""

    span: Span
    depth: int
    """0 for the task's own span, 1 for its children..."""
    parent: int
    """Index in the subtree of the span it hangs under (-1 for the task's span)."""


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, which)
    return None


def scalar_attributes(span: Span, keys: frozenset[str] | None = None) -> dict[str, Any]:
    """The span's attributes with a string, bool, int or double value (others are None),
    only those in ``keys`` when given."""
    return {kv.key: _value(kv.value) for kv in span.attributes
            if keys is None or kv.key in keys}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _finite(value: float | None) -> float | None:
    """``value`` unless it is NaN or infinite (which no sum can use)."""
    return value if value is not None and value - value == 0 else None


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _first_number(attrs: Mapping[str, Any], keys: Iterable[str]) -> float | None:
    for key in keys:
        if attrs.get(key) is not None:
            return _finite(_number(attrs[key]))
    return None


_DETAILS_INPUT_KEYS = ("input", "prompt_tokens", "input_tokens")
_DETAILS_OUTPUT_KEYS = ("output", "completion_tokens", "output_tokens")
"""Langfuse ``usage_details`` keys: its own, and the provider's names its integrations
pass through as they are (``langfuse.openai``: OpenAI's ``prompt_tokens``...)."""


def _tokens(value: float | None) -> int | None:
    return None if value is None else int(value)


def _model(attrs: Mapping[str, Any]) -> str | None:
    for key in UsageAttributes.MODEL_KEYS:
        value = attrs.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def attributes_usage(attrs: Mapping[str, Any], prices: PriceTable | None = None) -> Usage:
    """The usage a span with these (scalar) attributes reports itself, its cost priced from
    ``prices`` (default: the shipped table) when it reports none (see the module doc)."""
    tokens_in = _tokens(_first_number(attrs, UsageAttributes.INPUT_TOKEN_KEYS))
    tokens_out = _tokens(_first_number(attrs, UsageAttributes.OUTPUT_TOKEN_KEYS))
    cost = _first_number(attrs, UsageAttributes.COST_KEYS)
    if tokens_in is None or tokens_out is None:
        details = _json_object(attrs.get(UsageAttributes.LANGFUSE_USAGE_DETAILS))
        if tokens_in is None:
            tokens_in = _tokens(_first_number(details, _DETAILS_INPUT_KEYS))
        if tokens_out is None:
            tokens_out = _tokens(_first_number(details, _DETAILS_OUTPUT_KEYS))
    if cost is None:
        details = _json_object(attrs.get(UsageAttributes.LANGFUSE_COST_DETAILS))
        cost = _finite(_number(details.get("total")))
    model = _model(attrs)
    if cost is None and model is not None and (tokens_in is not None
                                               or tokens_out is not None):
        price = (prices or default_prices()).price(model)
        if price is not None:
            cost = price.cost(tokens_in, tokens_out)
    return Usage(tokens_in, tokens_out, cost, model)


def span_usage(span: Span, prices: PriceTable | None = None) -> Usage:
    """The usage ``span`` reports itself (its descendants' not included)."""
    return attributes_usage(scalar_attributes(span, USAGE_KEYS), prices)


def most_used(models: Iterable[str | None]) -> str | None:
    """The model named most often (the first named of those on a tie); None when none is
    named."""
    counts = Counter(m for m in models if m is not None)
    if not counts:
        return None
    return counts.most_common(1)[0][0]  # most_common keeps first-seen order on ties


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _plus(a: Usage, b: Usage) -> Usage:
    """The figures summed (the model is decided by the caller)."""
    return Usage(_add(a.input_tokens, b.input_tokens), _add(a.output_tokens, b.output_tokens),
                 _add(a.cost, b.cost))


def _is_annotation(span: Span) -> bool:
    """Whether a span is a Logfire annotation (feedback on its parent, not a step)."""
    return any(kv.key == "logfire.span_type" and kv.value.string_value == "annotation"
               for kv in span.attributes)


def task_subtree(trace: StoredTrace | None, task_span_id: bytes) -> list[SubtreeSpan]:
    """The task's span and every span below it in ``trace``, depth first, children in
    start order; empty when the trace or the span is not stored. A span seen twice (a
    cycle of parent ids) is listed once; Logfire annotation spans (feedback, read by the
    aggregator) are left out."""
    if trace is None:
        return []
    root = next((ts.span for ts in trace.spans if ts.span.span_id == task_span_id), None)
    if root is None:
        return []
    children: dict[bytes, list[Span]] = defaultdict(list)
    for ts in trace.spans:  # in start order
        if (ts.span.parent_span_id and ts.span.span_id != task_span_id
                and not _is_annotation(ts.span)):
            children[ts.span.parent_span_id].append(ts.span)
    out: list[SubtreeSpan] = []
    seen: set[bytes] = set()
    stack: list[tuple[Span, int, int]] = [(root, 0, -1)]
    while stack:  # iterative: a trace may nest deeper than Python's recursion limit
        span, depth, parent = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        out.append(SubtreeSpan(span, depth, parent))
        index = len(out) - 1
        stack += [(child, depth + 1, index)
                  for child in reversed(children.get(span.span_id, ()))
                  if child.span_id not in seen]
    return out


def subtree_usage(subtree: Sequence[SubtreeSpan], usages: Sequence[Usage]) -> Usage:
    """The leaves-only sum over a ``task_subtree`` whose spans report ``usages`` (one per
    span, in the same order): a span's own usage counts only when nothing below it
    reports any figure; the model most of them name."""
    below = [False] * len(subtree)
    total = NO_USAGE
    for i in range(len(subtree) - 1, -1, -1):  # every span after its descendants
        mine = usages[i].figures
        if mine and not below[i]:
            total = _plus(total, usages[i])
        parent = subtree[i].parent
        if parent >= 0 and (mine or below[i]):
            below[parent] = True
    return total._replace(model=most_used(u.model for u in usages))


def task_usage(trace: StoredTrace | None, task_span_id: bytes,
               prices: PriceTable | None = None) -> Usage:
    """What the task whose span is ``task_span_id`` used, from its stored ``trace``, costs
    not reported priced from ``prices`` (default: the shipped table; see the module doc);
    ``NO_USAGE`` when nothing reports any or the trace is not stored."""
    if trace is not None and len(trace.spans) == 1:  # the common case: the task alone
        only = trace.spans[0].span
        return span_usage(only, prices) if only.span_id == task_span_id else NO_USAGE
    subtree = task_subtree(trace, task_span_id)
    return subtree_usage(subtree, [span_usage(s.span, prices) for s in subtree])


def sum_usage(usages: Iterable[Usage | None]) -> Usage | None:
    """The usages summed figure by figure (None where none reports it); None when none
    reports anything; the model most of them name."""
    total = NO_USAGE
    models = []
    for usage in usages:
        if usage is not None:
            total = _plus(total, usage)
            models.append(usage.model)
    total = total._replace(model=most_used(models))
    return total if total.known else None
