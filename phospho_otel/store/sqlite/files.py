"""The SQLite file around the store's connections: what a path holds, checked before
anything is changed (``inspect``), and SQLite's errors as the store API's (``failure``
for reads and writes, ``open_failure`` at open).

``inspect`` refuses, with one line and without touching the file, a path that is a
directory, a file that is not a SQLite database, a damaged (truncated) one, and another
application's database. Files of ours carry ``schema.APPLICATION_ID`` in their header
(``PRAGMA application_id``); files made before it have our ``meta`` and ``counters``
tables and no id, and are ours too (the id is set when they are next opened for writing).

Which failures a retry can fix (``failure``): those of the file's surroundings, which
pass without changing the request (``StoreUnavailable``: the file locked by another
process, a full disk, an I/O error, a file made read-only); anything else, a value the
file cannot hold, a damaged file, an SQL error, is ``StoreError`` (permanent).
"""

from __future__ import annotations

import enum
import os
import sqlite3
from pathlib import Path

from phospho_otel.errors import ServerError, StoreError, StoreUnavailable
from phospho_otel.store.sqlite import schema

__all__ = ["FileKind", "failure", "inspect", "open_failure"]

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

# SQLite's primary result codes (the low byte of an extended code)
BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR, CORRUPT = 5, 6, 7, 8, 9, 10, 11
FULL, CANTOPEN, PROTOCOL, NOTADB = 13, 14, 15, 26

_CODE_OF_MESSAGE = {
    "database is locked": BUSY,
    "database table is locked": LOCKED,
    "database schema is locked": LOCKED,
    "out of memory": NOMEM,
    "attempt to write a readonly database": READONLY,
    "interrupted": INTERRUPT,
    "disk I/O error": IOERR,
    "database disk image is malformed": CORRUPT,
    "database or disk is full": FULL,
    "unable to open database file": CANTOPEN,
    "locking protocol": PROTOCOL,
    "file is not a database": NOTADB,
}
"""SQLite's message of each code, for Pythons without ``sqlite_errorcode`` (3.10)."""

TRANSIENT = frozenset({BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR, FULL, CANTOPEN,
                       PROTOCOL})
"""Result codes of conditions that pass without changing the request."""


class FileKind(enum.Enum):
    """What ``inspect`` found at a path."""

    NEW = "new"
    """No file, an empty file, or a SQLite database without any table."""
    OURS = "ours"
    """A store: our application id."""
    OLDER = "older"
    """A store made before the application id (our tables, no id)."""


def code_of(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of an error (0 when unknown)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    return _CODE_OF_MESSAGE.get(str(exc), 0)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _damaged(path: str, detail: str) -> StoreError:
    return StoreError(f"{path} is damaged ({detail}): restore it from a backup, or give"
                      " another path for a new store")


def _not_sqlite(path: str) -> StoreError:
    return StoreError(f"{path} is not a SQLite database (it holds something else): give"
                      " the path of a phospho-otel store, or of a new file")


def _creatable(path: str) -> None:
    """Raise if a new file cannot be created at ``path``."""
    parent = Path(path).parent
    if not parent.exists():
        raise StoreError(f"cannot create {path}: directory {parent} does not exist; create"
                         " it, or give another path")
    if not parent.is_dir():
        raise StoreError(f"cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create {path}: directory {parent} is read-only for this"
                         " user; make it writable, or give another path")


def inspect(path: str, *, read_only: bool, timeout_s: float) -> FileKind:
    """What ``path`` holds, read without changing anything (no lock kept, no ``-wal`` or
    ``-shm`` file left). Raises a one-line ``StoreError`` when it is not a store that can
    be opened (``read_only``: read; else written): a directory, a missing file (read
    only) or one that cannot be created, a file that is not a SQLite database, a damaged
    one, another application's database, a file without the permissions needed."""
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"{path} is a directory, not a store file: give a file path, e.g."
                         f" {p / 'phospho.db'}")
    if not p.exists():
        if read_only:
            raise StoreError(f"no database at {path}: the file does not exist (give the"
                             " path of a store a server has written)")
        _creatable(path)
        return FileKind.NEW
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {path}: permission denied")
    if not read_only:
        if not os.access(path, os.W_OK):
            raise StoreError(f"{path} is read-only (not writable by this user): make it"
                             " writable, or read it with the view commands (--db)")
        if not os.access(p.parent, os.W_OK | os.X_OK):
            raise StoreError(f"{path} is in a read-only directory ({p.parent}): SQLite"
                             " needs to create its -wal and -shm files next to it; make the"
                             " directory writable")
    size = _size(path)
    wal = _size(f"{path}-wal")
    if size == 0 and wal == 0:
        return FileKind.NEW
    if size:
        with open(path, "rb") as f:
            header = f.read(100)
        if header[:16] != SQLITE_MAGIC:
            if len(header) < 16 and SQLITE_MAGIC.startswith(header):
                raise _damaged(path, f"truncated to {size} bytes")
            raise _not_sqlite(path)
        if len(header) < 100:
            raise _damaged(path, f"truncated to {size} bytes")
        if not wal:
            page_size = int.from_bytes(header[16:18], "big")
            page_size = 65536 if page_size == 1 else page_size
            pages = int.from_bytes(header[28:32], "big")
            valid = header[24:28] == header[92:96]  # "in-header database size" is valid
            if valid and pages and pages * page_size > size:
                raise _damaged(path, f"truncated: {size} bytes of {pages * page_size}")
        if int.from_bytes(header[68:72], "big") == schema.APPLICATION_ID:
            return FileKind.OURS
    return _ask_sqlite(path, wal=bool(wal), timeout_s=timeout_s)


def _ask_sqlite(path: str, *, wal: bool, timeout_s: float) -> FileKind:
    """The application id and the tables, through a read-only connection. Without a
    ``-wal`` or ``-journal`` file the main file is the whole database: it is opened
    ``immutable`` (no lock, no ``-shm`` file created)."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    if not wal and not os.path.exists(f"{path}-journal"):
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s)
        try:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            tables = [name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise open_failure(exc, path) from exc
    if app_id == schema.APPLICATION_ID:
        return FileKind.OURS
    if app_id == 0 and not tables:
        return FileKind.NEW
    if app_id == 0 and {"meta", "counters"} <= set(tables):
        return FileKind.OLDER
    shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
    owner = f"application_id {app_id:#010x}" if app_id else "no application_id"
    raise StoreError(
        f"{path} is not a phospho-otel store: it is another application's SQLite database"
        f" ({owner}; tables: {shown or 'none'}); nothing was changed: give the path of a"
        " phospho-otel store, or of a new file")


def open_failure(exc: sqlite3.Error, path: str) -> StoreError:
    """The one-line ``StoreError`` of a SQLite error met while opening ``path``."""
    code = code_of(exc)
    if code in (BUSY, LOCKED):
        return StoreError(f"{path} is locked by another process (another phospho-otel"
                          " server, or a program in a write transaction on it): stop it, or"
                          " give another path")
    if code == FULL:
        return StoreError(f"no space left on the device of {path}: free some space, or"
                          " give a path on another disk")
    if code == READONLY:
        return StoreError(f"{path} is read-only (or on a read-only filesystem): make it"
                          " writable, or read it with the view commands (--db)")
    if code == CANTOPEN:
        return StoreError(f"cannot open {path} ({exc}): check that it and its directory"
                          " exist and are writable (SQLite creates -wal and -shm files next"
                          " to it)")
    if code in (CORRUPT, NOTADB):
        return _damaged(path, str(exc))
    if code == IOERR:
        if _device_full(path):  # SQLite says IOERR when it cannot create the -shm file
            return StoreError(f"no space left on the device of {path}: free some space,"
                              " or give a path on another disk")
        return StoreError(f"cannot open {path}: disk I/O error ({exc})")
    return StoreError(f"cannot open {path}: {exc}")


def _device_full(path: str) -> bool:
    """Whether the filesystem holding ``path`` has less than a page-cache's worth
    (64 KiB) left for this user."""
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024


def failure(exc: BaseException, path: str) -> ServerError:
    """A failed read or write as the store API's error: ``StoreUnavailable`` when a retry
    may succeed (``TRANSIENT`` codes), else ``StoreError``. Nothing of a failed write was
    kept (the transaction was rolled back)."""
    if isinstance(exc, ServerError):
        return exc
    if isinstance(exc, OverflowError):
        return StoreError(f"{path}: a value does not fit a 64-bit integer ({exc}); the"
                          " batch was not stored")
    if not isinstance(exc, sqlite3.Error):
        return StoreError(f"{path}: {type(exc).__name__}: {exc}")
    code = code_of(exc)
    if code in (BUSY, LOCKED):
        return StoreUnavailable(f"{path} is locked by another process (a write transaction"
                                " held elsewhere); retry", retry_after_s=1.0)
    if code == FULL:
        return StoreUnavailable(f"no space left on the device of {path}: nothing of this"
                                " request was kept; retry once space is freed",
                                retry_after_s=5.0)
    if code == READONLY:
        return StoreUnavailable(f"{path} has become read-only (or its filesystem has):"
                                " nothing of this request was kept; retry once it is"
                                " writable", retry_after_s=5.0)
    if code in TRANSIENT:
        return StoreUnavailable(f"{path}: {exc}; nothing of this request was kept, retry",
                                retry_after_s=2.0)
    if code in (CORRUPT, NOTADB):
        return StoreError(f"{path} is damaged ({exc}); nothing of this request was kept")
    return StoreError(f"{path}: {exc}; nothing of this request was kept")
