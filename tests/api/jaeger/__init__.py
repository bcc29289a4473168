"""Tests of the Jaeger-compatible query API."""
