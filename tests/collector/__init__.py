"""Tests of the shipped collector configurations and of the SDK -> collector -> aggregator
route."""
