"""The package surface: exported names, no server imports, flush at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import phospho_otel
import phospho_otel.sdk

from .otlp_sink import OtlpSink


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


class TestSurface:
    """__all__ is sorted, complete and importable."""

    def test_all_is_sorted_and_exported(self) -> None:
        """Every name in __all__ exists; the list is sorted; the SDK's are re-exported."""
        for module in (phospho_otel, phospho_otel.sdk):
            assert module.__all__ == sorted(module.__all__, key=isort_key)
            for name in module.__all__:
                assert hasattr(module, name), name
        assert set(phospho_otel.sdk.__all__) <= set(phospho_otel.__all__)
        public = {
            name for name, value in vars(phospho_otel).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert public - {"annotations"} == set(phospho_otel.__all__)

    def test_root_imports_no_server_code(self) -> None:
        """`import phospho_otel` loads neither starlette, uvicorn, click nor sqlite3."""
        code = ("import sys, phospho_otel; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                "('starlette', 'uvicorn', 'click', 'sqlite3')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == "[]"


class TestConventionDoc:
    """docs/semantic-conventions.md documents every key of phospho_otel.semconv."""

    def test_every_key_documented(self) -> None:
        """Each key (and the version) appears in the doc, written as code."""
        from pathlib import Path

        from phospho_otel import semconv

        doc = (Path(__file__).parents[2] / "docs" / "semantic-conventions.md").read_text()
        assert f"version {semconv.SEMCONV_VERSION}" in doc
        for cls in (semconv.SessionAttributes, semconv.UserAttributes, semconv.IOAttributes,
                    semconv.PhosphoAttributes, semconv.ForeignAttributes):
            for name, key in vars(cls).items():
                if name.isupper():
                    key = key + "<key>" if key.endswith(".") else key
                    assert f"`{key}`" in doc, key
        for enum in (semconv.SpanTypeValues, semconv.FeedbackFlagValues,
                     semconv.MimeTypeValues):
            for member in enum:
                assert f"`{member.value}`" in doc, member


class TestExit:
    """Pending spans are flushed at interpreter exit."""

    def test_flush_at_exit(self, sink: OtlpSink) -> None:
        """A script that logs and exits without flush() still delivers its tasks."""
        script = textwrap.dedent(f"""
            import phospho_otel as phospho
            phospho.init(endpoint={sink.http_endpoint!r}, schedule_delay_s=30)
            for i in range(50):
                phospho.log(f"q{{i}}", "a")
        """)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        assert sink.span_count() == 50
