"""A bare ``pip install`` (no extras) in a fresh virtual environment: the SDK imports and
exports, and ``phospho-otel`` says in one line which extra it needs instead of crashing;
the wheel ships the package only (no tools, tests or benchmarks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``pip install <repo>`` and nothing else; its bin/ directory."""
    base = tmp_path_factory.mktemp("bare")
    source = base / "source"  # a copy: building writes build/ and *.egg-info beside it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "phospho_otel", source / "phospho_otel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", str(source)],
                   check=True, capture_output=True, timeout=600)
    return bin_dir


class TestBareInstall:
    """What an app developer gets from ``pip install phospho-otel``."""

    def test_sdk_imports_without_server_dependencies(self, bare: Path) -> None:
        """The SDK imports; the server's and the tests' dependencies are not installed."""
        code = (
            "import importlib, phospho_otel\n"
            "phospho_otel.init(endpoint='http://127.0.0.1:9', schedule_delay_s=0.05)\n"
            "phospho_otel.log(input='q', output='a')\n"
            "phospho_otel.shutdown(0.2)\n"
            "missing = []\n"
            "for m in ('click', 'starlette', 'uvicorn', 'opentelemetry.exporter.otlp.proto.grpc',"
            " 'opentelemetry.exporter.otlp.proto.http'):\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except ImportError:\n"
            "        missing.append(m)\n"
            "print(','.join(missing))\n"
        )
        out = subprocess.run([bare / "python", "-c", code], capture_output=True, text=True,
                             timeout=60, check=True)
        assert out.stdout.strip().split(",") == [
            "click", "starlette", "uvicorn", "opentelemetry.exporter.otlp.proto.grpc",
            "opentelemetry.exporter.otlp.proto.http"], out.stdout + out.stderr

    def test_command_says_which_extra(self, bare: Path) -> None:
        """``phospho-otel`` exits 1 with one line naming the server extra, no traceback."""
        out = subprocess.run([bare / "phospho-otel", "sessions"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 1
        assert out.stdout == ""
        assert out.stderr.count("\n") == 1, out.stderr
        assert "pip install 'phospho-otel[server]'" in out.stderr
        assert "Traceback" not in out.stderr

    def test_wheel_ships_the_package_only(self, bare: Path) -> None:
        """Only ``phospho_otel`` is installed: no tools, tests or benchmarks packages."""
        code = ("import importlib.util as u; print([m for m in ('tools', 'tests', 'benchmarks',"
                " 'phospho_otel.rotel', 'phospho_otel.demo') if u.find_spec(m) is not None])")
        out = subprocess.run([bare / "python", "-c", code], capture_output=True, text=True,
                             timeout=60, check=True, cwd=bare)
        assert out.stdout.strip() == "[]"

    def test_wheel_ships_the_dashboard_files(self, bare: Path) -> None:
        """The dashboard's templates, style sheet, script and the vendored Chart.js are
        installed with the package (package data): nothing is fetched at run time."""
        code = ("import importlib.util as u, json, pathlib; "
                "p = pathlib.Path(u.find_spec('phospho_otel').origin).parent / 'dashboard'; "
                "print(json.dumps([str(f.relative_to(p)) for f in p.rglob('*') "
                "if f.suffix in ('.html', '.css', '.js')]))")
        out = subprocess.run([bare / "python", "-c", code], capture_output=True, text=True,
                             timeout=60, check=True, cwd=bare)
        shipped = set(json.loads(out.stdout))
        source = ROOT / "phospho_otel" / "dashboard"
        expected = {str(f.relative_to(source)) for f in source.rglob("*")
                    if f.suffix in (".html", ".css", ".js")}
        assert "static/vendor/chart.js/chart.umd.min.js" in expected
        assert shipped == expected
