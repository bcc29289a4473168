"""Cost from the price table: the shipped table (``insights/prices.toml``) matched by exact
name, then by longest prefix at a separator; an insights file's ``[prices]`` merged over
it (and refused with the key named when unusable); a span's reported cost before its
priced tokens; a task's model, the most used; and the analyzer pricing with the
configured table, end to end through a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from phospho_otel.errors import ConfigurationError
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import load_config
from phospho_otel.insights.prices import Price, PriceTable, default_prices
from phospho_otel.insights.usage import attributes_usage, sum_usage
from phospho_otel.model.analysis import Usage
from phospho_otel.store import open_store
from tests.support.oracle import write
from tests.support.otlp import make_request, make_span, task_span


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o", "gpt-4o"),
    ("GPT-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ("models/gemini-2.0-flash", "gemini-2.0-flash"),
    ("openai/gpt-4o-mini", "gpt-4o-mini"),
    ("mistral-large-latest", "mistral-large"),
    ("gpt-4.5-preview", None),  # not "gpt-4": a "." is no separator
    ("gpt-4omni", None),
    ("fake-gpt", None),
    ("", None),
])
def test_default_table_matching(model: str, expected: str | None) -> None:
    table = default_prices()
    assert table.price(model) == (None if expected is None else table.prices[expected])


def test_price_cost() -> None:
    price = Price(2.5, 10.0)
    assert price.cost(1_000_000, 100_000) == pytest.approx(3.5)
    assert price.cost(None, 1000) == pytest.approx(0.01)
    assert price.cost(None, None) is None


GENAI = {"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
         "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200}


def test_span_cost_reported_else_priced() -> None:
    priced = attributes_usage(GENAI)
    assert priced.model == "gpt-4o-2024-08-06"  # the model that answered
    assert priced.cost == pytest.approx((1000 * 2.5 + 200 * 10.0) / 1e6)
    reported = attributes_usage({**GENAI, "gen_ai.usage.cost": 0.5})
    assert reported.cost == 0.5
    unknown = attributes_usage({**GENAI, "gen_ai.response.model": "my-finetune"})
    assert unknown == Usage(1000, 200, None, "my-finetune")
    mine = PriceTable({"my-finetune": Price(1.0, 1.0)})
    assert attributes_usage({**GENAI, "gen_ai.response.model": "my-finetune"},
                            mine).cost == pytest.approx(1200 / 1e6)
    openinference = attributes_usage({"llm.model_name": "claude-3-haiku-20240307",
                                      "llm.token_count.prompt": 4000,
                                      "llm.token_count.completion": 400})
    assert openinference.cost == pytest.approx((4000 * 0.25 + 400 * 1.25) / 1e6)
    assert attributes_usage({"gen_ai.request.model": "gpt-4o"}) == Usage(None, None, None,
                                                                          "gpt-4o")


def test_sum_keeps_the_most_used_model() -> None:
    total = sum_usage([Usage(1, 1, 0.1, "a"), Usage(2, 2, None, "b"), None,
                       Usage(3, 3, 0.2, "b")])
    assert total is not None
    assert (total.input_tokens, total.model) == (6, "b")
    assert total.cost == pytest.approx(0.3)
    tie = sum_usage([Usage(1, None, None, "x"), Usage(1, None, None, "y")])
    assert tie is not None and tie.model == "x"
    assert sum_usage([None, Usage(None, None, None)]) is None


def test_config_prices_merged_over_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "insights.toml"
    path.write_text('[prices]\n"gpt-4o" = { input = 1, output = 2 }\n'
                    '"my-finetune" = { input = 3.0, output = 12.0 }\n')
    prices = load_config(path).prices
    assert prices.price("gpt-4o-2024-08-06") == Price(1.0, 2.0)
    assert prices.price("my-finetune") == Price(3.0, 12.0)
    assert prices.price("gpt-4o-mini") == default_prices().price("gpt-4o-mini")
    assert load_config(None).prices == default_prices()
    yaml = tmp_path / "insights.yaml"
    yaml.write_text("prices:\n  my-model: {input: 0.5, output: 1.5}\n")
    assert load_config(yaml).prices.price("my-model") == Price(0.5, 1.5)


@pytest.mark.parametrize(("text", "message"), [
    ('[prices]\n"m" = { input = 1 }\n', 'prices."m": needs both input and output'),
    ('[prices]\n"m" = { input = -1, output = 1 }\n', 'prices."m".input: must be a number'),
    ('[prices]\n"m" = { input = "1", output = 1 }\n', 'prices."m".input: must be a number'),
    ('[prices]\n"m" = { input = 1, output = 1, cached = 1 }\n', 'prices."m".cached: unknown'),
    ('prices = 3\n', "prices: must be a table"),
    ('[prices]\n"m" = 2\n', 'prices."m": must be a table'),
])
def test_bad_prices_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=r"bad\.toml") as info:
        load_config(path)
    assert message in str(info.value)


def test_analyzer_prices_with_the_configured_table(tmp_path: Path) -> None:
    """A task whose LLM call reports tokens and a model, no cost: priced from the config's
    table (an override of the default), its model stored and read back."""
    config_path = tmp_path / "insights.toml"
    config_path.write_text('[prices]\n"gpt-4o" = { input = 10, output = 100 }\n')
    task = task_span("t1", session_id="s1", user_id="u1", start_ns=10**18)
    call = make_span(GENAI, trace_id=task.trace_id, span_id=b"\x01" * 8,
                     parent_span_id=task.span_id, start_ns=10**18 + 1)
    store = open_store(str(tmp_path / "p.db"))
    try:
        write(store, make_request([task, call]))
        analyzer = Analyzer(store, load_config(config_path), clock=lambda: 10**18 + 10**13,
                            classify_every_s=0)
        while analyzer.run_once():
            pass
        with store.read() as r:
            usage = r.task_analyses(["t1"])["t1"].usage
            session = r.session_analyses(["s1"])["s1"].usage
    finally:
        store.close()
    assert usage is not None and session is not None
    assert usage.model == session.model == "gpt-4o-2024-08-06"
    assert usage.cost == pytest.approx((1000 * 10 + 200 * 100) / 1e6)
    assert session.cost == usage.cost
