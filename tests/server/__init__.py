"""Tests of the aggregator service: settings, and the server process."""
