"""The labelled data set (``data/conversations.yaml``) covers what it claims, and the
built-in analysis stays above quality floors on it (``labelled.score``; the table is
printed by ``benchmarks/bench_insights_quality.py``).

The floors are set a margin below the figures measured when they were written (each one's
comment says the figure; for labels with a handful of items, a margin of one item): they
catch a detector that gets worse, not one that is not yet good. A degraded analysis
breaks them (``test_a_degraded_analysis_breaks_the_floors``).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from phospho_otel.model.analysis import (
    END_REASONS,
    EVALUATION_LABELS,
    SENTIMENT_LABELS,
    USER_CLASSES,
    Evaluation,
)
from tests.insights.labelled import (
    EVENT_NAMES,
    LabelledSet,
    LabelScore,
    Predictions,
    QualityReport,
    analyze,
    load_labelled,
    score,
)

NS_PER_DAY = 86_400 * 1_000_000_000

FLOORS: list[tuple[str, str, str, float]] = [
    # (group, label, "precision" | "recall" | "f1", floor)      measured when written
    ("evaluation", "success", "precision", 0.9),                 # 0.97
    ("evaluation", "success", "recall", 0.9),                    # 0.99
    ("evaluation", "failure", "precision", 0.85),                # 0.93
    ("evaluation", "failure", "recall", 0.8),                    # 0.88
    ("evaluation+feedback", "failure", "precision", 0.85),       # 0.94
    ("evaluation+feedback", "failure", "recall", 0.8),           # 0.90
    ("event", "thanks", "precision", 0.8),                       # 0.91
    ("event", "thanks", "recall", 0.85),                         # 1.00
    ("event", "abuse", "precision", 0.8),                        # 1.00
    ("event", "abuse", "recall", 0.7),                           # 0.86
    ("event", "prompt_injection", "precision", 0.8),             # 1.00
    ("event", "prompt_injection", "recall", 0.33),               # 0.44
    ("event", "goodbye", "precision", 0.8),                      # 1.00
    ("event", "goodbye", "recall", 0.55),                        # 0.69
    ("event", "human_request", "precision", 0.55),               # 0.71
    ("event", "human_request", "recall", 0.5),                   # 0.62
    ("event", "frustration", "precision", 0.6),                  # 1.00
    ("event", "frustration", "recall", 0.13),                    # 0.20
    ("sentiment", "neutral", "f1", 0.65),                        # 0.78
    ("sentiment", "positive", "recall", 0.5),                    # 0.66
    ("sentiment", "negative", "recall", 0.35),                   # 0.49
    ("end_reason", "resolved", "precision", 0.9),                # 1.00
    ("end_reason", "resolved", "recall", 0.9),                   # 1.00
    ("end_reason", "abandoned_after_failure", "recall", 0.8),    # 1.00 (6 of 6)
    ("end_reason", "abandoned_after_failure", "precision", 0.75),  # 0.86 (6 of 7)
    ("end_reason", "abandoned_after_error", "recall", 0.9),      # 1.00
    ("end_reason", "frustrated", "recall", 0.8),                 # 0.90 (9 of 10)
    ("end_reason", "frustrated", "precision", 0.9),              # 1.00
    ("end_reason", "explicit", "precision", 0.9),                # 1.00 (3 of 3)
    ("end_reason", "other", "precision", 0.75),                  # 1.00 (5 of 5)
    ("end_reason", "other", "recall", 0.75),                     # 1.00 (5 of 5)
    ("user_class", "struggling", "recall", 0.7),                 # 1.00 (4 of 4)
    ("user_class", "struggling", "precision", 0.55),             # 0.67 (4 of 6)
]
"""Floors on one label's figure each."""
ALMOST_EXACT_CLASSES = ("power", "abusive", "dormant", "new")
"""User classes that must be found for every user but one at most, and given to one wrong
user at most (all exact when written)."""
LANGUAGE_ACCURACY_FLOOR = 0.75  # 0.86 (no answer counts as wrong)
LANGUAGE_ANSWERED_ACCURACY_FLOOR = 0.95  # 1.00


@pytest.fixture(scope="module")
def data() -> LabelledSet:
    return load_labelled()


@pytest.fixture(scope="module")
def predictions(data: LabelledSet) -> Predictions:
    return analyze(data)


@pytest.fixture(scope="module")
def report(data: LabelledSet, predictions: Predictions) -> QualityReport:
    return score(data, predictions)


def _figure(s: LabelScore, metric: str) -> float:
    value = {"precision": s.precision, "recall": s.recall, "f1": s.f1}[metric]
    return 0.0 if value is None else value


def broken_floors(report: QualityReport) -> list[str]:
    """Every floor ``report`` is under, in words."""
    broken = []
    for group, label, metric, floor in FLOORS:
        value = _figure(report.get(group, label), metric)
        if value < floor:
            broken.append(f"{group} {label} {metric} {value:.2f} < {floor}")
    for label in ALMOST_EXACT_CLASSES:
        s = report.get("user_class", label)
        if s.correct < s.support - 1 or s.predicted - s.correct > 1:
            broken.append(f"user_class {label}: {s.correct} of {s.support} found, "
                          f"{s.predicted - s.correct} wrong")
    if report.language_accuracy < LANGUAGE_ACCURACY_FLOOR:
        broken.append(f"language accuracy {report.language_accuracy:.2f}")
    if report.language_answered_accuracy < LANGUAGE_ANSWERED_ACCURACY_FLOOR:
        broken.append(f"language answered accuracy {report.language_answered_accuracy:.2f}")
    return broken


# -- the data set --------------------------------------------------------------------------

def test_the_data_set_is_a_few_hundred_turns_of_a_few_dozen_users_over_three_weeks(
        data: LabelledSet) -> None:
    turns = data.turns
    assert len(turns) >= 300
    assert len(data.sessions) >= 100
    assert 30 <= len(data.users) <= 50
    starts = [s.start_ns for s in data.sessions]
    assert (max(starts) - min(starts)) / NS_PER_DAY >= 20
    assert len({s.app for s in data.sessions}) >= 4


def test_every_label_has_several_examples(data: LabelledSet) -> None:
    turns = data.turns
    evaluations = Counter(t.labels.evaluation for t in turns)
    assert all(evaluations[label] >= 10 for label in EVALUATION_LABELS), evaluations
    events = Counter(e for t in turns for e in t.labels.events)
    assert all(events[name] >= 5 for name in EVENT_NAMES), events
    sentiments = Counter(t.labels.sentiment for t in turns)
    assert all(sentiments[label] >= 20 for label in SENTIMENT_LABELS), sentiments
    languages = Counter(t.labels.language for t in turns)
    assert all(languages[code] >= 5 for code in ("en", "fr", "es", "de", "it", "pt")), languages
    reasons = Counter(s.end_reason for s in data.sessions)
    assert all(reasons[r] >= 3 for r in END_REASONS), reasons
    classes = Counter(c for cs in data.users.values() for c in cs)
    assert all(classes[c] >= 2 for c in USER_CLASSES), classes
    assert sum(1 for cs in data.users.values() if not cs) >= 15  # users in no class


def test_the_hard_cases_are_there(data: LabelledSet) -> None:
    turns = data.turns
    assert sum(1 for t in turns if t.status == "error") >= 3
    assert sum(1 for t in turns if t.status == "ok" and not (t.output or "").strip()) >= 2
    assert sum(1 for t in turns if t.feedback) >= 10
    assert sum(1 for s in data.sessions if s.explicit_end) >= 5
    # sarcastic thanks: a thanks word, labelled frustration and not thanks
    sarcastic = [t for t in turns if "thanks" in t.input.lower()
                 and "frustration" in t.labels.events and "thanks" not in t.labels.events]
    assert len(sarcastic) >= 2
    # a power user who also struggles; a user in three classes
    assert any({"power", "struggling"} <= cs for cs in data.users.values())
    assert any(len(cs) >= 2 and "abusive" in cs for cs in data.users.values())
    # refusing a prompt injection is a success
    assert any("prompt_injection" in t.labels.events and t.labels.evaluation == "success"
               for t in turns)


def test_records_are_what_the_insights_take(data: LabelledSet) -> None:
    records, feedback = data.to_task_records()
    assert len(records) == len(data.turns)
    assert len({r.task_id for r in records}) == len(records)
    assert len({(r.trace_id, r.span_id) for r in records}) == len(records)
    by_id = {r.task_id: r for r in records}
    for s in data.sessions:
        own = [by_id[t.task_id] for t in s.turns]
        assert all(r.session_id == s.session_id and r.user_id == s.user_id for r in own)
        assert all(json.loads(r.metadata) == {"system_prompt": s.system_prompt} for r in own)
        assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(own))
        assert all(r.start_ns <= r.end_ns for r in own)
        ends = s.session_events()
        assert len(ends) == (1 if s.explicit_end else 0)
        assert all(e.kind == "end" and e.time_ns > own[-1].end_ns for e in ends)
    for task_id, fb in feedback.items():
        assert fb.flag in ("success", "failure")
        assert fb.time_ns > by_id[task_id].end_ns
    assert data.reference_ns == max(r.start_ns for r in records)


def test_a_bad_label_is_refused_with_its_place(tmp_path: Path) -> None:
    text = """
prompts: {app: "You are an app."}
users: {u1: []}
sessions:
- session_id: s1
  user_id: u1
  start: "2025-11-03T10:00:00Z"
  system_prompt: "You are an app."
  explicit_end: false
  labels: {end_reason: resolved}
  turns:
  - input: "hello"
    output: "hi"
    gap_s: 0
    duration_s: 1
    labels: {evaluation: great, sentiment: neutral, language: en}
"""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"session s1 turn 1 evaluation: 'great'"):
        load_labelled(path)
    path.write_text(text.replace("great", "success"), encoding="utf-8")
    assert load_labelled(path).turns[0].labels.evaluation == "success"


# -- the scorer ----------------------------------------------------------------------------

def test_label_scores() -> None:
    s = LabelScore("g", "x", support=4, predicted=2, correct=1)
    assert (s.precision, s.recall) == (0.5, 0.25)
    assert s.f1 == pytest.approx(1 / 3)
    assert LabelScore("g", "x", 3, 0, 0).precision is None
    assert LabelScore("g", "x", 0, 2, 0).recall is None
    assert LabelScore("g", "x", 3, 2, 0).f1 == 0.0


@pytest.mark.parametrize(("group", "label", "metric", "floor"), FLOORS,
                         ids=[f"{g}-{lab}-{m}" for g, lab, m, _ in FLOORS])
def test_quality_floor(report: QualityReport, group: str, label: str, metric: str,
                       floor: float) -> None:
    s = report.get(group, label)
    assert _figure(s, metric) >= floor, s


@pytest.mark.parametrize("label", ALMOST_EXACT_CLASSES)
def test_user_classes_are_found(report: QualityReport, predictions: Predictions,
                                data: LabelledSet, label: str) -> None:
    s = report.get("user_class", label)
    expected = sorted(u for u, cs in data.users.items() if label in cs)
    got = sorted(u for u, cs in predictions.classes.items() if any(c.label == label
                                                                   for c in cs))
    assert s.correct >= s.support - 1 and s.predicted - s.correct <= 1, (expected, got)


def test_language_floors(report: QualityReport) -> None:
    assert report.language_accuracy >= LANGUAGE_ACCURACY_FLOOR
    assert report.language_answered_accuracy >= LANGUAGE_ANSWERED_ACCURACY_FLOOR


def test_feedback_only_helps(report: QualityReport) -> None:
    for label in ("success", "failure"):
        alone = report.get("evaluation", label)
        with_feedback = report.get("evaluation+feedback", label)
        assert with_feedback.correct >= alone.correct


def test_a_degraded_analysis_breaks_the_floors(data: LabelledSet, report: QualityReport,
                                               predictions: Predictions) -> None:
    assert broken_floors(report) == []
    blind = Evaluation("unknown", 0.5, "test", "no opinion")
    degraded = Predictions(
        heuristic={k: blind for k in predictions.heuristic},
        tasks={k: a._replace(evaluation=blind, events=(), sentiment=None, language=None)
               for k, a in predictions.tasks.items()},
        session_scope={k: () for k in predictions.session_scope},
        sessions=predictions.sessions, classes={k: () for k in predictions.classes})
    broken = broken_floors(score(data, degraded))
    assert any(b.startswith("evaluation failure recall 0.00") for b in broken), broken
    assert any(b.startswith("event thanks recall 0.00") for b in broken), broken
    assert any(b.startswith("user_class power") for b in broken), broken
    assert any(b.startswith("language accuracy") for b in broken), broken
