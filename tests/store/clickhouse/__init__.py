"""Tests of the ClickHouse backend beyond the conformance suite: URLs, failures,
replicas, and the differential test against SQLite."""
