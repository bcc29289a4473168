"""The ClickHouse backend of the store API: the scale-out store, shared by any number of
aggregator replicas (``open_store("clickhouse://HOST:9000/DB")``; needs the
``clickhouse`` extra: ``clickhouse-driver``).

``backend`` (``ClickHouseStore``: connections, lifecycle), ``connection`` (clients,
failures), ``schema`` (the tables), ``writer`` (the write path), ``rollups`` (the merge at
read, generated from ``model.rollup``), ``views`` / ``insights`` / ``traces`` (the three
reader protocols of ``store.api``). See ``docs/clickhouse.md``.
"""

from __future__ import annotations

from phospho_otel.store.clickhouse.backend import ClickHouseReader, ClickHouseStore

__all__ = ["ClickHouseReader", "ClickHouseStore"]
