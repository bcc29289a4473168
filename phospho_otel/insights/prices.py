"""What an LLM call costs when its span reports tokens but no cost: a price table by model
name, in USD per 1 million input and output tokens.

The default table ships with the package (``prices.toml``, dated, with its sources); an
insights file's ``[prices]`` table is merged over it, model by model
(``insights.config``). Nothing is downloaded.

``PriceTable.price(model)`` finds a model's ``Price``: the exact name (case-insensitive),
else the longest name of the table that the model's name starts with, followed by one of
``NAME_SEPARATORS`` (dated snapshots: ``gpt-4o-2024-08-06`` is priced as ``gpt-4o``, but
``gpt-4.5-preview`` is not priced as ``gpt-4``); a name with a ``/`` (``openai/gpt-4o``,
``models/gemini-2.0-flash``) is also tried by its last part. None when nothing matches:
the call then has no cost.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["NAME_SEPARATORS", "PER_TOKENS", "Price", "PriceError", "PriceTable", "default_prices",
           "parse_prices"]

NAME_SEPARATORS = ("-", ":", "@", "_")
"""What may follow a table's name in a model's name that it prices by prefix."""
PER_TOKENS = 1_000_000
"""Prices are per this many tokens."""


class Price(NamedTuple):
    """A model's price, USD per 1 million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """The cost of these tokens (a count not reported counts 0); None when neither is
        reported."""
        if input_tokens is None and output_tokens is None:
            return None
        return ((input_tokens or 0) * self.input + (output_tokens or 0) * self.output) \
            / PER_TOKENS


class PriceTable:
    """Prices by model name (see the module doc for how a name is matched)."""

    __slots__ = ("_by_name", "_longest_first")

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._by_name = {name.lower(): price for name, price in prices.items()}
        self._longest_first = sorted(self._by_name, key=len, reverse=True)

    @property
    def prices(self) -> dict[str, Price]:
        """Every model name of the table (lowercased) and its price."""
        return dict(self._by_name)

    def merged(self, overrides: Mapping[str, Price]) -> PriceTable:
        """This table with ``overrides`` added or replacing its models' prices."""
        return PriceTable({**self._by_name, **{k.lower(): v for k, v in overrides.items()}})

    def price(self, model: str | None) -> Price | None:
        """The price of ``model`` (None: not priced)."""
        if not model:
            return None
        name = model.strip().lower()
        found = self._match(name)
        if found is None and "/" in name:
            found = self._match(name.rsplit("/", 1)[1])
        return found

    def _match(self, name: str) -> Price | None:
        exact = self._by_name.get(name)
        if exact is not None:
            return exact
        for known in self._longest_first:  # a few dozen names: a scan costs microseconds
            if len(name) > len(known) and name.startswith(known) \
                    and name[len(known)] in NAME_SEPARATORS:
                return self._by_name[known]
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceTable) and other._by_name == self._by_name

    def __hash__(self) -> int:
        return hash(frozenset(self._by_name.items()))

    def __repr__(self) -> str:
        return f"PriceTable({len(self._by_name)} models)"


class PriceError(ValueError):
    """A price table entry that cannot be used; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise PriceError(key, f"must be a number, 0 or more, got {value!r}")
    return float(value)


def parse_prices(table: object, section: str = "prices") -> dict[str, Price]:
    """The prices of a ``[prices]`` table (``{model: {input = x, output = y}}``, USD per 1M
    tokens); raises ``PriceError`` naming the entry that cannot be used."""
    if not isinstance(table, Mapping):
        raise PriceError(section, f"must be a table of models, got {type(table).__name__}")
    out: dict[str, Price] = {}
    for model, entry in table.items():
        key = f'{section}."{model}"'
        if not isinstance(model, str) or not model.strip():
            raise PriceError(key, "a model name must be a non-empty string")
        if not isinstance(entry, Mapping):
            raise PriceError(key, "must be a table {input = USD per 1M tokens, output = ...}")
        unknown = set(entry) - {"input", "output"}
        if unknown:
            raise PriceError(f"{key}.{sorted(unknown)[0]}", "unknown key (known: input, output)")
        if "input" not in entry or "output" not in entry:
            raise PriceError(key, "needs both input and output (USD per 1M tokens)")
        out[model.strip()] = Price(_rate(f"{key}.input", entry["input"]),
                                   _rate(f"{key}.output", entry["output"]))
    return out


@functools.lru_cache(maxsize=1)
def default_prices() -> PriceTable:
    """The shipped table (``prices.toml``, package data)."""
    text = resources.files("phospho_otel.insights").joinpath("prices.toml").read_text(
        encoding="utf-8")
    return PriceTable(parse_prices(tomllib.loads(text).get("prices", {})))
