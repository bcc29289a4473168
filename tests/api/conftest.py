"""Fixtures of the API tests: the scripted data set's file, a real server on it and a
client (``tests/support/scripted``)."""

from __future__ import annotations

from tests.support.scripted import client, db_path, server

__all__ = ["client", "db_path", "server"]
