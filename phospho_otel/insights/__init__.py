"""Insights: figures composed from the store's ``InsightReader`` primitives, independent of
the backend. One module per subject (``sessions``, ``users``), plus the cache that serves
them with bounded staleness (``cache``). A new insight is one function over a
``store.api.StoreReader`` in the module of its subject (or a new module), and one view in
``api.views``.
"""

from __future__ import annotations

from phospho_otel.insights.cache import CachedResult, InsightsCache
from phospho_otel.insights.sessions import EndingGroup, SessionInsights, session_insights
from phospho_otel.insights.users import UserInsights, user_insights

__all__ = [
    "CachedResult",
    "EndingGroup",
    "InsightsCache",
    "SessionInsights",
    "UserInsights",
    "session_insights",
    "user_insights",
]
