"""``phospho-otel`` and ``python -m phospho_otel``: the command line.

The command line needs the ``server`` extra (click, Starlette, uvicorn); on an install
without it, this says so in one line instead of failing with an ``ImportError``.
"""

from __future__ import annotations

import sys

SERVER_EXTRA_MODULES = frozenset({"click", "starlette", "uvicorn"})
"""Modules of the ``server`` extra."""


def main() -> None:
    """Run the command line (``phospho_otel.cli``)."""
    try:
        from phospho_otel.cli import main as cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_EXTRA_MODULES:
            raise
        print(f"phospho-otel: the command line needs the server extra ({exc.name} is missing):"
              " pip install 'phospho-otel[server]'", file=sys.stderr)
        raise SystemExit(1) from None
    cli()


if __name__ == "__main__":
    main()
