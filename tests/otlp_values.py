"""OTLP attribute values from Python values, for tests that build spans by hand."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue


def any_value(value: object) -> AnyValue:
    """An OTLP AnyValue of a Python value (bool, int, float, bytes, list; str otherwise)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def attrs(mapping: Mapping[str, object]) -> list[KeyValue]:
    """OTLP attributes of a mapping."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in mapping.items()]
