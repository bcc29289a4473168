"""Fixtures of the CLI tests: the scripted data set's file and a real server on the same
file (``tests/support/scripted``)."""

from __future__ import annotations

from tests.support.scripted import db_path, server

__all__ = ["db_path", "server"]
