"""A small tmpfs the test can fill, grow or make read-only: a real ``ENOSPC`` / ``EROFS``
under a real store. Mounting needs root with CAP_SYS_ADMIN (as in CI's container);
elsewhere the test is skipped, saying why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

__all__ = ["Tmpfs"]


class Tmpfs:
    """A tmpfs of ``size`` (``mount``'s syntax: ``1m``) mounted on the fresh directory
    ``where``; ``unmount()`` after use."""

    def __init__(self, where: Path, size: str) -> None:
        self.path = where
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): "
                        f"{done.stderr.strip()}")

    def read_only(self) -> None:
        """Remount it read-only."""
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def resize(self, size: str) -> None:
        """Remount it with another size (growing it frees space for what is there)."""
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self) -> None:
        """Write a file until the filesystem is full."""
        with open(self.path / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
