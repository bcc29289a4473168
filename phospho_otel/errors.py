"""Exceptions raised by phospho-otel.

::

    PhosphoError
    └── ConfigurationError   (also a ValueError: a bad init() argument or endpoint)

Bad arguments to the logging calls raise the builtin ``TypeError`` / ``ValueError`` at
the call site; export problems are never raised into the app (they are logged and
counted, see ``phospho_otel.stats()``).
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "PhosphoError"]


class PhosphoError(Exception):
    """Root of every exception defined by phospho-otel."""


class ConfigurationError(PhosphoError, ValueError):
    """An unusable setting given to ``init()`` (argument or environment variable)."""
