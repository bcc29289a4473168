"""The web dashboard: the Insights, Sessions, Users and Tasks tabs, served by the
aggregator at ``/`` (``dashboard_routes``), rendered on the server from the same view
functions as ``/api`` (``api.views``), with Chart.js (shipped in ``static/vendor``) for the
charts and no other script. ``docs/dashboard.md`` shows it; ``auth`` logs browsers in when
the server has a token and guards every form against cross-site requests."""

from phospho_otel.dashboard.auth import TokenAuthMiddleware
from phospho_otel.dashboard.routes import dashboard_routes

__all__ = ["TokenAuthMiddleware", "dashboard_routes"]
