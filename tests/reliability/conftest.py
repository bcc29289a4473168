"""Fixtures of the reliability suite, and its mode: ``PHOSPHO_RELIABILITY_LONG=1`` (or
``scripts/reliability.sh``) runs every loop longer (more kills, more fuzzing examples,
longer overload) than CI's few minutes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.sdk_env import clean_sdk
from tests.support.tmpfs import Tmpfs

__all__ = ["LONG", "clean_sdk", "tmpfs"]

LONG = os.environ.get("PHOSPHO_RELIABILITY_LONG") == "1"
"""The long mode (see the module docstring)."""


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Tmpfs]]:
    """Mounts small tmpfs (``mount("1m")``) under ``tmp_path``; unmounted after the test."""
    mounted: list[Tmpfs] = []

    def mount(size: str = "1m") -> Tmpfs:
        fs = Tmpfs(tmp_path / f"fs{len(mounted)}", size)
        mounted.append(fs)
        return fs

    yield mount
    for fs in mounted:
        fs.unmount()
