"""Tests of the aggregator: extraction, input conventions, the ingest queue."""
