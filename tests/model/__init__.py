"""Tests of the pure data model: records and rollups."""
