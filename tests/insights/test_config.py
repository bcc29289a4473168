"""``insights.config.load_config``: the shipped defaults, TOML and YAML files over them,
and a clear error naming the file and key for what cannot be used."""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.errors import ConfigurationError
from phospho_otel.insights.config import (
    ClassSettings,
    InsightsConfig,
    LLMSettings,
    SessionSettings,
    WebhookSettings,
    default_events,
    load_config,
)
from phospho_otel.insights.events import EventDefinition, EventDetector


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config(None)
    assert config == InsightsConfig()
    assert config.judge is None
    assert len(config.events) == 7 and all(isinstance(d, EventDefinition)
                                           for d in config.events)
    assert config.events == default_events()
    EventDetector(config.events)


def test_defaults_file_repeats_the_dataclass_defaults() -> None:
    """defaults.toml's [sessions], [classes] and [webhooks] are the dataclasses' defaults
    (one may not drift from the other)."""
    from importlib import resources

    from phospho_otel.insights.config import _parse

    data = _parse(resources.files("phospho_otel.insights").joinpath(
        "defaults.toml").read_text(encoding="utf-8"), "defaults.toml", ".toml")
    assert isinstance(data, dict)
    for section, cls in (("sessions", SessionSettings), ("classes", ClassSettings),
                         ("webhooks", WebhookSettings)):
        defaults = dataclasses.asdict(cls())
        written = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in data[section].items()}
        assert written == defaults, section
    assert "judge" not in data  # commented out: the judge is off by default


def test_toml_file_replaces_events_and_overrides_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "insights.toml", """
[[events]]
name = "refund"
scope = "input"
keywords = ["refund", "money back"]
webhook = "http://127.0.0.1:9/hook"

[[events]]
name = "apology"
scope = "output"
llm_question = "Does the answer apologise?"
min_score = 0.7

[judge]
url = "http://127.0.0.1:8000/v1"
model = "small"
api_key_env = ""
timeout_s = 3

[sessions]
inactivity_timeout_s = 600

[classes]
power_top_share = 0.1
abusive_events = ["abuse"]

[webhooks]
max_attempts = 2
""")
    config = load_config(path)
    assert [d.name for d in config.events] == ["refund", "apology"]
    assert config.events[0].keywords == ("refund", "money back")
    assert config.events[0].webhook == "http://127.0.0.1:9/hook"
    assert config.events[1].min_score == 0.7
    assert config.judge == LLMSettings(url="http://127.0.0.1:8000/v1", model="small",
                                       api_key_env=None, timeout_s=3.0)
    assert config.sessions == SessionSettings(inactivity_timeout_s=600.0)
    assert config.classes == ClassSettings(power_top_share=0.1, abusive_events=("abuse",))
    assert config.webhooks == WebhookSettings(max_attempts=2)
    assert isinstance(config.sessions.inactivity_timeout_s, float)


def test_yaml_file_with_defaults_included(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        path = write(tmp_path, f"insights{suffix}", """
include_defaults: true
events:
  - name: refund
    scope: input
    regex: "\\\\b(refund|money back)\\\\b"
  - name: thanks            # replaces the default of that name
    scope: input
    keywords: [cheers]
judge:
  url: https://api.example.com/v1
  model: m
  api_key_env: null
sessions:
  idle_gap_s: 60
""")
        config = load_config(path)
        assert [d.name for d in config.events] == [
            "frustration", "abuse", "prompt_injection", "goodbye", "human_request", "refusal",
            "refund", "thanks"]
        assert config.events[-1].keywords == ("cheers",)
        assert config.events[-2].regex == r"\b(refund|money back)\b"
        assert config.judge is not None and config.judge.api_key_env is None
        assert config.sessions == SessionSettings(idle_gap_s=60.0)
        assert config.classes == ClassSettings()


def test_a_file_without_events_keeps_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "c.toml", "[sessions]\nidle_gap_s = 10\n"))
    assert config.events == default_events()
    assert load_config(write(tmp_path, "empty.yaml", "")) == InsightsConfig()
    assert load_config(write(tmp_path, "none.toml", "events = []\n")).events == ()


def test_an_event_with_unless(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "c.toml", """
[[events]]
name = "thanks"
scope = "input"
keywords = ["thanks"]
unless = '''
for\\s+nothing
|useless
'''
"""))
    (thanks,) = config.events
    assert thanks.unless == r"for\s+nothing|useless"
    assert thanks.matches("thanks!") and not thanks.matches("thanks for nothing")


@pytest.fixture
def detectors_module() -> Iterator[str]:
    module = types.ModuleType("h1_config_detectors")
    module.yes = lambda ctx: True  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module.__name__
    del sys.modules[module.__name__]


def test_python_callable_is_imported(tmp_path: Path, detectors_module: str) -> None:
    config = load_config(write(tmp_path, "p.toml", f"""
[[events]]
name = "always"
scope = "task"
python = "{detectors_module}:yes"
"""))
    assert config.events[0].python == f"{detectors_module}:yes"


@pytest.mark.parametrize(("text", "message"), [
    ("colour = 1\n", r"colour: unknown key \(known: include_defaults, events"),
    ("include_defaults = 1\n", "include_defaults: must be true or false"),
    ("[sessions]\nidle_gap = 3\n", r"sessions.idle_gap: unknown key \(known: "
                                   "inactivity_timeout_s, idle_gap_s"),
    ("[sessions]\nidle_gap_s = 'long'\n", "sessions.idle_gap_s: must be a number, got a "
                                          "string"),
    ("[sessions]\nidle_gap_s = 0\n", "sessions.idle_gap_s: must be positive, got 0"),
    ("[sessions]\ninactivity_timeout_s = -5\n", "sessions.inactivity_timeout_s: must be "
                                                "positive"),
    ("[sessions]\nidle_gap_s = true\n", "sessions.idle_gap_s: must be a number, got a "
                                        "boolean"),
    ("[classes]\npower_min_tasks = 2.5\n", "classes.power_min_tasks: must be an integer"),
    ("[classes]\npower_min_tasks = 0\n", "classes.power_min_tasks: must be 1 or more"),
    ("[classes]\npower_top_share = 1.5\n", "classes.power_top_share: is a share"),
    ("[classes]\nabusive_events = 'abuse'\n", "classes.abusive_events: must be a list"),
    ("[webhooks]\nbackoff_s = -1\n", "webhooks.backoff_s: must be 0 or more"),
    ("[judge]\nmodel = 'm'\n", "judge.url: is required"),
    ("[judge]\nurl = 'http://x'\nmodel = 'm'\nmax_concurrency = 0\n",
     "judge.max_concurrency: must be 1 or more"),
    ("sessions = 3\n", "sessions: must be a table"),
    ("events = 'frustration'\n", "events: must be a list of tables"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nkeywords = ['a']\ncolor = 'red'\n",
     r"events\[0\] \(x\).color: unknown key"),
    ("[[events]]\nname = 'x'\nkeywords = ['a']\n", r"events\[0\] \(x\): needs a name and a "
                                                   "scope"),
    ("[[events]]\nname = 'x'\nscope = 'inbox'\nkeywords = ['a']\n",
     r"events\[0\] \(x\): event 'x': scope must be one of"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nregex = '(oops'\n",
     r"events\[0\] \(x\): event 'x': bad regex"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nkeywords = []\n",
     r"events\[0\] \(x\).keywords: must be a non-empty list"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nkeywords = ['a']\nregex = 'b'\n",
     "exactly one of keywords, regex, llm_question, python"),
    ("[[events]]\nname = 'x'\nscope = 'input'\npython = 'no_such_module_h1:f'\n",
     r"events\[0\] \(x\).python: cannot import module 'no_such_module_h1'"),
    ("[[events]]\nname = 'x'\nscope = 'input'\npython = 'os.path:nope'\n",
     r"events\[0\] \(x\).python: 'os.path:nope': 'os.path' has no attribute"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nregex = 3\n",
     r"events\[0\] \(x\).regex: must be a string, got an integer"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nkeywords = ['a']\n"
     "[[events]]\nname = 'x'\nscope = 'output'\nkeywords = ['b']\n",
     r"events\[1\] \(x\): an event of this name is defined twice"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nkeywords = ['a']\nunless = 3\n",
     r"events\[0\] \(x\): event 'x': unless must be a non-empty string"),
    ("[[events]]\nname = 'x'\nscope = 'input'\nkeywords = ['a']\nunless = '(b'\n",
     r"events\[0\] \(x\): event 'x': bad unless regex"),
    ("[sessions\n", "not valid TOML"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigurationError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read it"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match=r"unknown format '\.json'"):
        load_config(write(tmp_path, "c.json", "{}"))
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_config(write(tmp_path, "c.yaml", "events: [\n"))
    with pytest.raises(ConfigurationError, match=r"\(top level\): must be a table"):
        load_config(write(tmp_path, "list.yaml", "- 1\n- 2\n"))
