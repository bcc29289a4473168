"""Environment variable readers shared by the SDK and the server.

Each reader takes one variable (or the first set one of several names), parses it, and on
an unusable value logs one warning naming the variable and the value, then returns the
default: a bad environment never stops an app or a server from starting (a bad *argument*
raises, see ``phospho_otel.errors``). An empty or all-blank value counts as unset.

Every reader takes ``env`` (default ``os.environ``) so that callers and tests can pass
their own mapping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

__all__ = ["env_choice", "env_float", "env_int", "env_str", "first_env"]

logger = logging.getLogger("phospho_otel")


def first_env(names: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(name, value)`` of the first of ``names`` set to a non-blank value (stripped)."""
    env = os.environ if env is None else env
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _warn(name: str, raw: str, why: str, default: object) -> None:
    logger.warning("phospho: ignoring %s=%r (%s); using %s", name, raw, why, default)


def env_str(name: str, default: str | None = None,
            env: Mapping[str, str] | None = None) -> str | None:
    """The variable's value (stripped), or ``default`` when unset or blank."""
    found = first_env((name,), env)
    return found[1] if found else default


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return ""


def env_int(name: str, default: int, *, lo: int | None = None, hi: int | None = None,
            env: Mapping[str, str] | None = None) -> int:
    """An integer variable within ``[lo, hi]`` (either bound optional)."""
    found = first_env((name,), env)
    if found is None:
        return default
    raw = found[1]
    try:
        value = int(raw)
    except ValueError:
        _warn(name, raw, f"not an integer {_bounds(lo, hi)}".rstrip(), default)
        return default
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        _warn(name, raw, f"not an integer {_bounds(lo, hi)}", default)
        return default
    return value


def env_float(name: str, default: float, *, lo: float | None = None, hi: float | None = None,
              env: Mapping[str, str] | None = None) -> float:
    """A number within ``[lo, hi]`` (either bound optional; NaN is always refused)."""
    found = first_env((name,), env)
    if found is None:
        return default
    raw = found[1]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        _warn(name, raw, f"not a number {_bounds(lo, hi)}".rstrip(), default)
        return default
    return value


def env_choice(names: str | Sequence[str], choices: Sequence[str], default: str, *,
               upper: bool = False, env: Mapping[str, str] | None = None) -> str:
    """One of ``choices``, from the first set of ``names``; compared in upper case (and
    returned so) when ``upper``, else exactly."""
    found = first_env((names,) if isinstance(names, str) else names, env)
    if found is None:
        return default
    name, raw = found
    value = raw.upper() if upper else raw
    if value not in choices:
        _warn(name, raw, f"not one of {'|'.join(choices)}", default)
        return default
    return value
