"""Imports run one way: app -> SDK -> collector -> receiver -> aggregator -> store ->
insights / api -> server -> cli. Each rule below names a package and what it must never
import (read from the source with ``ast``, so a lazy import inside a function counts too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "phospho_otel"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "phospho_otel.semconv": ("phospho_otel.",),
    "phospho_otel.errors": ("phospho_otel.",),
    "phospho_otel._env": ("phospho_otel.",),
    "phospho_otel.model": ("phospho_otel.aggregator", "phospho_otel.store",
                           "phospho_otel.receiver", "phospho_otel.api",
                           "phospho_otel.insights", "phospho_otel.server", "phospho_otel.cli",
                           "phospho_otel.sdk", "opentelemetry", "sqlite3"),
    "phospho_otel.sdk": ("phospho_otel.model", "phospho_otel.aggregator", "phospho_otel.store",
                         "phospho_otel.receiver", "phospho_otel.api", "phospho_otel.insights",
                         "phospho_otel.server", "phospho_otel.cli", "starlette", "uvicorn",
                         "click", "sqlite3"),
    "phospho_otel.store": ("phospho_otel.aggregator", "phospho_otel.receiver",
                           "phospho_otel.api", "phospho_otel.insights", "phospho_otel.server",
                           "phospho_otel.cli", "phospho_otel.sdk", "starlette", "uvicorn",
                           "click"),
    "phospho_otel.aggregator": ("phospho_otel.receiver", "phospho_otel.api",
                                "phospho_otel.insights", "phospho_otel.server",
                                "phospho_otel.cli", "phospho_otel.sdk",
                                "phospho_otel.store.sqlite", "starlette", "uvicorn", "click"),
    "phospho_otel.receiver": ("phospho_otel.api", "phospho_otel.insights",
                              "phospho_otel.server", "phospho_otel.cli", "phospho_otel.sdk",
                              "phospho_otel.store.sqlite"),
    "phospho_otel.insights": ("phospho_otel.aggregator", "phospho_otel.receiver",
                              "phospho_otel.api", "phospho_otel.server", "phospho_otel.cli",
                              "phospho_otel.sdk", "phospho_otel.store.sqlite", "starlette"),
    "phospho_otel.api": ("phospho_otel.aggregator", "phospho_otel.receiver",
                         "phospho_otel.server", "phospho_otel.cli", "phospho_otel.sdk",
                         "phospho_otel.store.sqlite"),
    "phospho_otel.server": ("phospho_otel.cli", "phospho_otel.sdk",
                            "phospho_otel.store.sqlite"),
    "phospho_otel.cli": ("phospho_otel.sdk", "phospho_otel.store.sqlite"),
    "phospho_otel.__init__": ("phospho_otel.model", "phospho_otel.aggregator",
                              "phospho_otel.store", "phospho_otel.receiver", "phospho_otel.api",
                              "phospho_otel.insights", "phospho_otel.server",
                              "phospho_otel.cli"),
}
"""Module or package -> prefixes it must not import."""

SQLITE_ALLOWED = "phospho_otel.store.sqlite"
"""The only package that may import ``sqlite3``."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the file of ``module``, relative ones
    resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _rules_for(module: str) -> list[str]:
    forbidden: list[str] = []
    for owner, prefixes in FORBIDDEN.items():
        if module == owner or module.startswith(owner + "."):
            forbidden += prefixes
    return forbidden


def _matches(imported: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return imported.startswith(prefix)
    return imported == prefix or imported.startswith(prefix + ".")


SOURCES = sorted(PACKAGE.rglob("*.py"))


class TestImportDirection:
    """Lower layers never import higher ones."""

    @pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
    def test_module(self, path: Path) -> None:
        """This module imports nothing its layer forbids, and ``sqlite3`` only inside the
        SQLite backend."""
        module = _module_name(path).removesuffix(".__init__")
        forbidden = _rules_for("phospho_otel.__init__" if module == "phospho_otel" else module)
        problems = []
        for line, imported in _imports(path, module):
            problems += [f"line {line}: imports {imported} ({prefix} is forbidden here)"
                         for prefix in forbidden if _matches(imported, prefix)]
            if _matches(imported, "sqlite3") and not module.startswith(SQLITE_ALLOWED):
                problems.append(f"line {line}: imports sqlite3 outside {SQLITE_ALLOWED}")
        assert not problems, "\n".join(problems)

    def test_rules_can_fail(self, tmp_path: Path) -> None:
        """The checker sees a forbidden import, a relative one and a lazy one."""
        probe = tmp_path / "_probe.py"
        probe.write_text("from ...api import views\n"
                         "def f():\n    import phospho_otel.server.run\n")
        imported = [name for _, name in _imports(probe, "phospho_otel.store.sqlite._probe")]
        assert "phospho_otel.api" in imported and "phospho_otel.server.run" in imported
        rules = _rules_for("phospho_otel.store.sqlite._probe")
        assert any(_matches("phospho_otel.api.views", p) for p in rules)
        assert any(_matches("phospho_otel.server.run", p) for p in rules)
