"""Start-up failures of the store (issue 9, defect 14, the store's half): a file that is
not a database, truncated, locked, on a full disk, a directory, read-only (file or
directory), a directory that does not exist. ``open_store`` raises a one-line
``StoreError`` saying what is wrong and what to do; ``phospho-otel serve`` (and a view
command with ``--db``) prints it as one line and exits non-zero, without a traceback.

Disk full and read-only files need a filesystem the test can fill or make read-only: a
small tmpfs, mounted here (root with CAP_SYS_ADMIN, as in CI's container); elsewhere those
cases are skipped, saying why. Not-root runs check read-only with file modes instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from phospho_otel.errors import StoreError
from phospho_otel.store import open_store
from phospho_otel.store.sqlite import SQLiteStore
from tests.reliability.test_store_locked import write_lock_held
from tests.support.oracle import write
from tests.support.otlp import make_request, task_span
from tests.support.tmpfs import Tmpfs

ROOT = os.geteuid() == 0


def _store_file(path: Path) -> Path:
    """A real store holding some data."""
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        write(store, *(make_request([task_span(f"t{i}-{j}", session_id=f"s{i}", input="x" * 400)
                                     for j in range(50)]) for i in range(20)))
    finally:
        store.close()
    return path


# Each case: (name, make(tmp_path, tmpfs) -> the --db path, words the message must hold)
def _not_a_database(tmp: Path, _: Callable[[str], Tmpfs]) -> Path:
    path = tmp / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    return path


def _truncated(tmp: Path, _: Callable[[str], Tmpfs]) -> Path:
    path = _store_file(tmp / "cut.db")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return path


def _truncated_header(tmp: Path, _: Callable[[str], Tmpfs]) -> Path:
    path = _store_file(tmp / "cut.db")
    with open(path, "r+b") as f:
        f.truncate(50)
    return path


def _a_directory(tmp: Path, _: Callable[[str], Tmpfs]) -> Path:
    path = tmp / "store.db"
    path.mkdir()
    return path


def _no_directory(tmp: Path, _: Callable[[str], Tmpfs]) -> Path:
    return tmp / "missing" / "store.db"


def _disk_full_new(tmp: Path, tmpfs: Callable[[str], Tmpfs]) -> Path:
    fs = tmpfs("1m")
    fs.fill()
    return fs.path / "store.db"


def _disk_full_existing(tmp: Path, tmpfs: Callable[[str], Tmpfs]) -> Path:
    fs = tmpfs("1m")
    path = fs.path / "store.db"
    SQLiteStore(path, synchronous="NORMAL").close()
    fs.fill()
    return path


def _read_only_file(tmp: Path, tmpfs: Callable[[str], Tmpfs]) -> Path:
    if not ROOT:
        path = _store_file(tmp / "ro.db")
        path.chmod(0o444)
        return path
    fs = tmpfs("4m")
    path = fs.path / "ro.db"
    SQLiteStore(path, synchronous="NORMAL").close()
    fs.read_only()
    return path


def _read_only_directory(tmp: Path, tmpfs: Callable[[str], Tmpfs]) -> Path:
    if not ROOT:
        directory = tmp / "ro"
        directory.mkdir()
        directory.chmod(0o555)
        return directory / "store.db"
    fs = tmpfs("1m")
    fs.read_only()
    return fs.path / "store.db"


CASES: list[tuple[str, Callable[[Path, Callable[[str], Tmpfs]], Path], tuple[str, ...]]] = [
    ("not a database", _not_a_database, ("not a SQLite database",)),
    ("truncated", _truncated, ("damaged", "backup")),
    ("truncated header", _truncated_header, ("damaged", "backup")),
    ("a directory", _a_directory, ("is a directory",)),
    ("no directory", _no_directory, ("does not exist",)),
    ("disk full, new file", _disk_full_new, ("no space left",)),
    ("disk full, existing file", _disk_full_existing, ("no space left",)),
    ("read-only file", _read_only_file, ("read-only",)),
    ("read-only directory", _read_only_directory, ("read-only",)),
]
IDS = [c[0] for c in CASES]


def _serve(path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    args = command or ("serve",)
    extra = ["--http-port", "0", "--grpc-port", "0"] if args[0] == "serve" else []
    return subprocess.run([sys.executable, "-m", "phospho_otel", *args, "--db", str(path),
                           *extra], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("PHOSPHO_")})


def _one_line(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


class TestOpenStore:
    """``open_store`` raises one-line ``StoreError``s saying what and what to do."""

    @pytest.mark.parametrize(("name", "make", "words"), CASES, ids=IDS)
    def test_case(self, tmp_path: Path, tmpfs: Callable[[str], Tmpfs], name: str,
                  make: Callable[[Path, Callable[[str], Tmpfs]], Path],
                  words: tuple[str, ...]) -> None:
        path = make(tmp_path, tmpfs)
        with pytest.raises(StoreError) as caught:
            open_store(str(path)).close()
        message = str(caught.value)
        assert "\n" not in message and str(path) in message, message
        for word in words:
            assert word in message, message

    def test_locked(self, tmp_path: Path) -> None:
        path = _store_file(tmp_path / "locked.db")
        with write_lock_held(path), pytest.raises(StoreError) as caught:
            open_store(str(path), open_timeout_s=0.3)
        assert "locked by another process" in str(caught.value)


class TestServe:
    """``phospho-otel serve --db <path>`` prints one line and exits non-zero."""

    @pytest.mark.parametrize(("name", "make", "words"), CASES, ids=IDS)
    def test_case(self, tmp_path: Path, tmpfs: Callable[[str], Tmpfs], name: str,
                  make: Callable[[Path, Callable[[str], Tmpfs]], Path],
                  words: tuple[str, ...]) -> None:
        line = _one_line(_serve(make(tmp_path, tmpfs)), "Error: cannot start: ")
        for word in words:
            assert word in line, line

    def test_locked(self, tmp_path: Path) -> None:
        path = _store_file(tmp_path / "locked.db")
        with write_lock_held(path):
            line = _one_line(_serve(path), "Error: cannot start: ")
        assert "locked by another process" in line

    def test_view_command(self, tmp_path: Path) -> None:
        """A view command reading a file that is not a store: the same one line."""
        path = _not_a_database(tmp_path, lambda size: pytest.fail("no tmpfs needed"))
        line = _one_line(_serve(path, "sessions"), "Error: cannot open the store: ")
        assert "not a SQLite database" in line

