"""Warnings logged once per process (per cause), so that a condition that repeats on
every call (a value too deep, a lone surrogate, a log after shutdown) is said once
instead of flooding the app's logs. ``phospho_otel.sdk.testing.reset()`` forgets them.

Thread-safe: a cause is logged once even when several threads meet it together.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["forget", "warn_once"]

_said: set[str] = set()
_lock = threading.Lock()


def warn_once(logger: logging.Logger, cause: str, message: str, *args: Any) -> bool:
    """Log ``message % args`` as a warning on ``logger`` unless ``cause`` was already
    warned about in this process; True if it was logged now."""
    if cause in _said:
        return False
    with _lock:
        if cause in _said:
            return False
        _said.add(cause)
    logger.warning(message, *args)
    return True


def forget() -> None:
    """Forget every cause: each may be warned about once more (for tests)."""
    with _lock:
        _said.clear()
