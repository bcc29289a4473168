"""Real instrumentation libraries from PyPI against a live aggregator (see harness.py)."""
