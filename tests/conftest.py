"""Shared by every test folder. Helpers live in ``tests/support`` (``from tests.support
import otlp``); the repository root is on ``sys.path`` (``pythonpath`` in pyproject.toml),
so ``tools`` imports too."""
