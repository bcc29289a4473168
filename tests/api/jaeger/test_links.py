"""trace_links: Jaeger UI search URLs for a session's or a user's traces."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from phospho_otel.api.jaeger import trace_links

UI = "http://jaeger.example:16686/"


def query_of(url: str) -> dict[str, str]:
    """The single-valued query parameters of a URL."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class TestTraceLinks:
    """The views put these URLs in a session's or user's ``links``."""

    def test_none_without_a_ui(self) -> None:
        """No jaeger_ui_url, or no id: None."""
        assert trace_links(None, session_id="s") is None
        assert trace_links("", session_id="s") is None
        assert trace_links(UI) is None

    def test_session_link(self) -> None:
        """A search of the session.id tag over the last two days by default."""
        links = trace_links(UI, session_id="sess 1/ä")
        assert links is not None and set(links) == {"jaeger_session_traces"}
        url = links["jaeger_session_traces"]
        assert url.startswith("http://jaeger.example:16686/search?")
        query = query_of(url)
        assert json.loads(query["tags"]) == {"session.id": "sess 1/ä"}
        assert query["lookback"] == "2d" and "service" not in query

    def test_user_link_with_service_and_window(self) -> None:
        """service preselects the service; start/end (ns) set a custom window in us,
        widened by a minute each side."""
        links = trace_links(
            UI, session_id="s", user_id="u", service="app", start_ns=10**18, end_ns=2 * 10**18
        )
        assert links is not None and set(links) == {"jaeger_session_traces", "jaeger_user_traces"}
        query = query_of(links["jaeger_user_traces"])
        assert json.loads(query["tags"]) == {"user.id": "u"}
        assert query["service"] == "app" and query["lookback"] == "custom"
        assert query["start"] == str(10**15 - 60_000_000)
        assert query["end"] == str(2 * 10**15 + 60_000_000)
