"""Tests of the SQLite backend itself: its file, schema, migrations, connections, WAL."""
