"""The labelled conversations of the insights quality benchmark, and their scorer.

``data/conversations.yaml`` holds hand-written chat sessions of four apps, each turn
labelled with what a careful reader would say (its evaluation, its events, the sentiment
and language of its input), each session with why it ended, and each user with their
classes; the labelling rules are in the file's header. ``load_labelled()`` reads it into
typed records (times as integer ns since the epoch, UTC) and checks every label against
the vocabularies of ``phospho_otel.model.analysis``; ``LabelledSet.to_task_records()``
builds the ``TaskRecord``s and ``TaskFeedback``s the insights' pure functions take, so that
they run over the data set without a server or a store.

``analyze(data)`` runs the built-in analysis over it the way the analyzer does
(``insights.analyzer``: the same ``TaskContext``s, evaluation pipeline, event detector,
text functions, session decision and user classification, with the shipped defaults), and
``score(data, predictions)`` compares the two: precision, recall and F1 per label
(``QualityReport``). ``benchmarks/bench_insights_quality.py`` prints the table;
``tests/insights/test_quality.py`` holds it above floors.

Two evaluation figures are scored: ``evaluation`` runs the heuristics with the users'
feedback withheld (feedback always wins, so scoring with it would mostly measure the
feedback), ``evaluation+feedback`` with it, as the analyzer runs. Sessions and user classes
are decided from the latter, as in production.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from phospho_otel.insights.classes import UserStats, classify_users
from phospho_otel.insights.config import InsightsConfig, load_config
from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.endings import decide_session
from phospho_otel.insights.evaluation import EvaluationPipeline
from phospho_otel.insights.events import EventDetector
from phospho_otel.insights.text import language, sentiment
from phospho_otel.model.analysis import (
    END_REASONS,
    EVALUATION_LABELS,
    SENTIMENT_LABELS,
    USER_CLASSES,
    DetectedEvent,
    Evaluation,
    SessionAnalysis,
    TaskAnalysis,
    UserClass,
)
from phospho_otel.model.records import (
    CONVENTION_PHOSPHO,
    SessionEventRecord,
    TaskFeedback,
    TaskRecord,
)

__all__ = [
    "BAD_END_REASONS",
    "DATA_PATH",
    "EVENT_NAMES",
    "LabelScore",
    "LabelledSession",
    "LabelledSet",
    "LabelledTurn",
    "Predictions",
    "QualityReport",
    "TurnLabels",
    "analyze",
    "analyze_task",
    "load_labelled",
    "score",
    "score_quality",
    "task_contexts",
]

DATA_PATH = Path(__file__).resolve().parent / "data" / "conversations.yaml"
EVENT_NAMES = ("frustration", "abuse", "prompt_injection", "thanks", "goodbye",
               "human_request")
"""The events labelled in the data set (the shipped defaults may define more)."""
BAD_END_REASONS = ("abandoned_after_failure", "abandoned_after_error", "frustrated")
"""End reasons counted in ``UserStats.sessions_ended_after_failure``."""
TURN_STATUSES = ("ok", "error")
PREVIOUS_TASKS = 5
"""Earlier tasks an evaluator sees (as ``insights.analyzer.PREVIOUS_TASKS``)."""
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
FEEDBACK_DELAY_NS = 10 * NS_PER_S
"""A turn's feedback is given this long after the turn ends."""
END_DELAY_NS = NS_PER_S
"""An explicit end comes this long after the session's last turn ends."""

_SESSION_KEYS = {"session_id", "user_id", "start", "system_prompt", "explicit_end",
                 "labels", "turns"}
_TURN_KEYS = {"input", "output", "status", "gap_s", "duration_s", "feedback", "labels"}
_TURN_LABEL_KEYS = {"evaluation", "events", "sentiment", "language"}


# -- the data set ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TurnLabels:
    """What a careful reader says of one turn."""

    evaluation: str
    """One of ``EVALUATION_LABELS``."""
    events: frozenset[str]
    """Among ``EVENT_NAMES``: what the user's input expresses."""
    sentiment: str
    """One of ``SENTIMENT_LABELS``: the tone of the input."""
    language: str | None
    """ISO 639-1 code of the input; None when nothing in it tells."""


@dataclass(frozen=True, slots=True)
class LabelledTurn:
    """One turn of a session: one task, its feedback if any, and its labels."""

    task_id: str
    input: str
    output: str | None
    status: str
    """``ok`` or ``error``."""
    start_ns: int
    end_ns: int
    feedback: str | None
    """The user's flag (``success`` / ``failure``), given ``FEEDBACK_DELAY_NS`` after the
    end; None without feedback."""
    labels: TurnLabels


@dataclass(frozen=True, slots=True)
class LabelledSession:
    """One session, its turns (oldest first) and why it ended."""

    session_id: str
    user_id: str
    app: str
    """The key of its system prompt in the file's ``prompts`` (the task's service name)."""
    system_prompt: str
    explicit_end: bool
    end_reason: str
    """One of ``END_REASONS``."""
    turns: tuple[LabelledTurn, ...]

    @property
    def start_ns(self) -> int:
        return self.turns[0].start_ns

    @property
    def end_ns(self) -> int:
        return self.turns[-1].end_ns

    def task_records(self) -> list[TaskRecord]:
        """Its turns as ``TaskRecord``s (metadata: ``{"system_prompt": ...}``)."""
        metadata = json.dumps({"system_prompt": self.system_prompt})
        records = []
        for turn in self.turns:
            digest = hashlib.sha256(turn.task_id.encode()).digest()
            records.append(TaskRecord(
                task_id=turn.task_id, trace_id=digest[:16], span_id=digest[16:24],
                session_id=self.session_id, user_id=self.user_id, name="chat",
                service_name=self.app, convention=CONVENTION_PHOSPHO, input=turn.input,
                output=turn.output, raw_input=None, raw_output=None, metadata=metadata,
                start_ns=turn.start_ns, end_ns=turn.end_ns, status=turn.status))
        return records

    def session_events(self) -> list[SessionEventRecord]:
        """Its explicit end (``END_DELAY_NS`` after its last turn), if it has one."""
        if not self.explicit_end:
            return []
        digest = hashlib.sha256(f"end/{self.session_id}".encode()).digest()
        return [SessionEventRecord(digest[:16], digest[16:24], self.session_id, "end", None,
                                   None, "sdk", self.end_ns + END_DELAY_NS)]


@dataclass(frozen=True, slots=True)
class LabelledSet:
    """The data set: sessions (in file order) and each user's expected classes."""

    sessions: tuple[LabelledSession, ...]
    users: Mapping[str, frozenset[str]]
    """Every user of the sessions -> their classes (among ``USER_CLASSES``)."""

    @property
    def turns(self) -> list[LabelledTurn]:
        return [t for s in self.sessions for t in s.turns]

    @property
    def reference_ns(self) -> int:
        """The latest activity: the start of the last task (what the store's
        ``latest_activity_ns`` is, and what user classes are decided as of)."""
        return max(t.start_ns for s in self.sessions for t in s.turns)

    def to_task_records(self) -> tuple[list[TaskRecord], dict[str, TaskFeedback]]:
        """Every turn as a ``TaskRecord`` (sessions in file order, turns in order), and the
        ``TaskFeedback`` of those with feedback, by task id."""
        records = [r for s in self.sessions for r in s.task_records()]
        feedback = {t.task_id: TaskFeedback(t.feedback, t.end_ns + FEEDBACK_DELAY_NS, None,
                                            "user")
                    for t in self.turns if t.feedback is not None}
        return records, feedback


class _Invalid(ValueError):
    pass


def _expect(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise _Invalid(f"{where}: {message}")


def _choice(value: object, allowed: Sequence[str], where: str) -> str:
    _expect(isinstance(value, str) and value in allowed, where,
            f"{value!r} is not one of {', '.join(allowed)}")
    assert isinstance(value, str)
    return value


def _seconds(value: object, where: str) -> int:
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
            where, f"{value!r} is not a number of seconds >= 0")
    assert isinstance(value, (int, float))
    return round(value * NS_PER_S)


def _iso_ns(value: object, where: str) -> int:
    _expect(isinstance(value, str), where, f"{value!r} is not an ISO time string")
    assert isinstance(value, str)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    _expect(moment.tzinfo is not None, where, f"{value!r} has no time zone")
    return round(moment.astimezone(timezone.utc).timestamp()) * NS_PER_S


def _turn(raw: object, session_id: str, index: int, after_ns: int) -> LabelledTurn:
    where = f"session {session_id} turn {index}"
    _expect(isinstance(raw, dict), where, "not a mapping")
    assert isinstance(raw, dict)
    _expect(set(raw) <= _TURN_KEYS, where, f"unknown keys {sorted(set(raw) - _TURN_KEYS)}")
    for key in ("input", "gap_s", "duration_s", "labels"):
        _expect(key in raw, where, f"no {key}")
    text, output = raw["input"], raw.get("output")
    _expect(isinstance(text, str) and bool(text.strip()), where, "input is not a text")
    _expect(output is None or isinstance(output, str), where, "output is not a text or null")
    status = _choice(raw.get("status", "ok"), TURN_STATUSES, f"{where} status")
    feedback = raw.get("feedback")
    if feedback is not None:
        feedback = _choice(feedback, ("success", "failure"), f"{where} feedback")
    start = after_ns + _seconds(raw["gap_s"], f"{where} gap_s")
    end = start + _seconds(raw["duration_s"], f"{where} duration_s")
    labels = raw["labels"]
    _expect(isinstance(labels, dict), f"{where} labels", "not a mapping")
    assert isinstance(labels, dict)
    _expect(set(labels) <= _TURN_LABEL_KEYS, f"{where} labels",
            f"unknown keys {sorted(set(labels) - _TURN_LABEL_KEYS)}")
    events = labels.get("events", [])
    _expect(isinstance(events, list), f"{where} events", "not a list")
    assert isinstance(events, list)
    names = frozenset(_choice(e, EVENT_NAMES, f"{where} events") for e in events)
    _expect(len(names) == len(events), f"{where} events", "an event is listed twice")
    lang = labels.get("language")
    _expect(lang is None or (isinstance(lang, str) and len(lang) == 2 and lang.islower()),
            f"{where} language", f"{lang!r} is not an ISO 639-1 code or null")
    return LabelledTurn(
        task_id=f"{session_id}/{index}", input=text, output=output, status=status,
        start_ns=start, end_ns=end, feedback=feedback,
        labels=TurnLabels(
            evaluation=_choice(labels.get("evaluation"), EVALUATION_LABELS,
                               f"{where} evaluation"),
            events=names,
            sentiment=_choice(labels.get("sentiment"), SENTIMENT_LABELS, f"{where} sentiment"),
            language=lang))


def _session(raw: object, apps: Mapping[str, str]) -> LabelledSession:
    _expect(isinstance(raw, dict), "session", "not a mapping")
    assert isinstance(raw, dict)
    session_id = raw.get("session_id")
    _expect(isinstance(session_id, str) and bool(session_id), "session",
            f"bad session_id {session_id!r}")
    assert isinstance(session_id, str)
    where = f"session {session_id}"
    _expect(set(raw) == _SESSION_KEYS, where,
            f"keys {sorted(raw)} are not {sorted(_SESSION_KEYS)}")
    user_id, prompt, explicit = raw["user_id"], raw["system_prompt"], raw["explicit_end"]
    _expect(isinstance(user_id, str) and bool(user_id), where, "bad user_id")
    _expect(isinstance(prompt, str) and prompt in apps, where,
            "system_prompt is not one of the file's prompts")
    _expect(isinstance(explicit, bool), where, "explicit_end is not a bool")
    labels = raw["labels"]
    _expect(isinstance(labels, dict) and set(labels) == {"end_reason"}, where,
            "labels must hold end_reason only")
    turns_raw = raw["turns"]
    _expect(isinstance(turns_raw, list) and bool(turns_raw), where, "no turns")
    assert isinstance(turns_raw, list)
    turns: list[LabelledTurn] = []
    after = _iso_ns(raw["start"], f"{where} start")
    for index, turn_raw in enumerate(turns_raw, 1):
        turn = _turn(turn_raw, session_id, index, after)
        turns.append(turn)
        after = turn.end_ns
    return LabelledSession(
        session_id=session_id, user_id=user_id, app=apps[prompt], system_prompt=prompt,
        explicit_end=explicit,
        end_reason=_choice(labels["end_reason"], END_REASONS, f"{where} end_reason"),
        turns=tuple(turns))


def load_labelled(path: str | Path = DATA_PATH) -> LabelledSet:
    """The data set at ``path`` (default: the one shipped in ``data/``). Raises
    ``ValueError`` naming the session, turn and key of anything malformed or mislabelled."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    _expect(isinstance(raw, dict) and set(raw) == {"prompts", "users", "sessions"}, str(path),
            "the top level must hold prompts, users and sessions")
    prompts, users_raw, sessions_raw = raw["prompts"], raw["users"], raw["sessions"]
    _expect(isinstance(prompts, dict) and all(isinstance(v, str) for v in prompts.values()),
            "prompts", "not a mapping of texts")
    apps = {text: name for name, text in prompts.items()}
    _expect(isinstance(sessions_raw, list), "sessions", "not a list")
    sessions = tuple(_session(s, apps) for s in sessions_raw)
    ids = Counter(s.session_id for s in sessions)
    _expect(max(ids.values()) == 1, "sessions",
            f"repeated ids {[i for i, n in ids.items() if n > 1]}")
    _expect(isinstance(users_raw, dict), "users", "not a mapping")
    users: dict[str, frozenset[str]] = {}
    for user_id, classes in users_raw.items():
        _expect(isinstance(classes, list), f"user {user_id}", "classes are not a list")
        users[str(user_id)] = frozenset(_choice(c, USER_CLASSES, f"user {user_id}")
                                        for c in classes)
    seen = {s.user_id for s in sessions}
    _expect(seen == set(users), "users",
            f"without sessions: {sorted(set(users) - seen)}; "
            f"without classes: {sorted(seen - set(users))}")
    return LabelledSet(sessions=sessions, users=users)


# -- running the analysis ----------------------------------------------------------------

@dataclass(frozen=True)
class Predictions:
    """What the built-in analysis says of the data set."""

    heuristic: Mapping[str, Evaluation]
    """Task id -> evaluation with feedback withheld."""
    tasks: Mapping[str, TaskAnalysis]
    """Task id -> analysis as the analyzer makes it (feedback first)."""
    session_scope: Mapping[str, tuple[DetectedEvent, ...]]
    """Session id -> its session-scope events."""
    sessions: Mapping[str, SessionAnalysis]
    classes: Mapping[str, tuple[UserClass, ...]]


def task_contexts(data: LabelledSet, *, with_feedback: bool = True,
                  ended: Iterable[str] = ()) -> list[TaskContext]:
    """The ``TaskContext`` of every turn, as the analyzer builds it: its feedback (unless
    withheld), the ``PREVIOUS_TASKS`` before it, the next one, the system prompt, its
    1-based position, and ``session_ended`` for the turns of the sessions in ``ended``
    (``events`` is left empty: ``analyze_task`` fills it, as the analyzer does)."""
    _, feedback = data.to_task_records()
    ended_ids = frozenset(ended)
    out = []
    for session in data.sessions:
        records = session.task_records()
        for i, task in enumerate(records):
            out.append(TaskContext(
                task=task, feedback=feedback.get(task.task_id) if with_feedback else None,
                previous=tuple(records[max(0, i - PREVIOUS_TASKS):i]),
                next=records[i + 1] if i + 1 < len(records) else None,
                system_prompt=session.system_prompt, position=i + 1,
                session_ended=session.session_id in ended_ids))
    return out


def analyze_task(ctx: TaskContext, pipeline: EvaluationPipeline, detector: EventDetector,
                 now_ns: int = 0) -> TaskAnalysis:
    """One task's analysis, made as the analyzer makes it: its events first (the
    evaluators read them in ``TaskContext.events``), then its evaluation, the sentiment
    and language of its input."""
    task = ctx.task
    events = tuple(detector.task_events(ctx))
    ctx = replace(ctx, events=tuple(dict.fromkeys(e.name for e in events)))
    return TaskAnalysis(task.task_id, task.session_id, task.user_id, task.start_ns,
                        ctx.position, pipeline.evaluate(ctx), events,
                        sentiment(task.input), language(task.input), now_ns)


def _reevaluated(analysis: TaskAnalysis, ctx: TaskContext,
                 pipeline: EvaluationPipeline) -> TaskAnalysis:
    """``analysis`` with its evaluation made again over ``ctx`` (its events kept)."""
    ctx = replace(ctx, events=tuple(dict.fromkeys(e.name for e in analysis.events)))
    return analysis._replace(evaluation=pipeline.evaluate(ctx))


def _user_stats(data: LabelledSet, tasks: Mapping[str, TaskAnalysis],
                session_scope: Mapping[str, tuple[DetectedEvent, ...]],
                sessions: Mapping[str, SessionAnalysis], window_from_ns: int) -> list[UserStats]:
    """Each user's ``UserStats``, counted as the store counts them (``user_facts``): tasks
    and active days over the UTC days from the window's first, sessions started in it."""
    first_day = window_from_ns // NS_PER_DAY
    by_user: dict[str, list[LabelledSession]] = {}
    for s in data.sessions:
        by_user.setdefault(s.user_id, []).append(s)
    stats = []
    for user_id, own in sorted(by_user.items()):
        turns = [t for s in own for t in s.turns]
        analyses = [tasks[t.task_id] for t in turns]
        in_window = [t for t in turns if t.start_ns // NS_PER_DAY >= first_day]
        events: Counter[str] = Counter(e.name for a in analyses for e in a.events)
        events.update(e.name for s in own for e in session_scope[s.session_id])
        ended = [sessions[s.session_id] for s in own
                 if sessions[s.session_id].state == "ended"]
        stats.append(UserStats(
            user_id=user_id, first_seen_ns=min(t.start_ns for t in turns),
            last_seen_ns=max(t.start_ns for t in turns), task_count=len(turns),
            session_count=len(own), tasks_in_window=len(in_window),
            sessions_in_window=sum(1 for s in own if s.start_ns >= window_from_ns),
            active_days_in_window=len({t.start_ns // NS_PER_DAY for t in in_window}),
            evaluated_count=sum(1 for a in analyses if a.evaluation.label != "unknown"),
            failure_count=sum(1 for a in analyses if a.evaluation.label == "failure"),
            sessions_ended=len(ended),
            sessions_ended_after_failure=sum(1 for a in ended
                                             if a.end_reason in BAD_END_REASONS),
            rephrase_count=sum(1 for a in analyses
                               if a.evaluation.source == "heuristic:rephrase"),
            event_counts=dict(events)))
    return stats


def analyze(data: LabelledSet, config: InsightsConfig | None = None) -> Predictions:
    """The built-in analysis of the whole data set (``config``: the shipped defaults).
    Sessions are decided a day after the latest activity, so every one of them has ended
    (explicitly or by the inactivity timeout)."""
    config = load_config(None) if config is None else config
    pipeline = EvaluationPipeline()
    detector = EventDetector(config.events)
    now = max(s.end_ns for s in data.sessions) + NS_PER_DAY
    tasks = {ctx.task.task_id: analyze_task(ctx, pipeline, detector, now)
             for ctx in task_contexts(data)}
    session_scope: dict[str, tuple[DetectedEvent, ...]] = {}
    sessions: dict[str, SessionAnalysis] = {}

    def decide(s: LabelledSession) -> SessionAnalysis:
        records = s.task_records()
        return decide_session(
            s.session_id, s.user_id, [(r, tasks[r.task_id]) for r in records],
            s.session_events(), now, config.sessions,
            session_scope_events=session_scope[s.session_id])

    for s in data.sessions:
        session_scope[s.session_id] = tuple(detector.session_events(s.task_records()))
        sessions[s.session_id] = decide(s)
    # as the analyzer: once a session has ended, its task with no next one (the user left
    # after it) is evaluated again knowing that, and the session decided again
    ended = {sid for sid, a in sessions.items() if a.state == "ended"}
    for ctx in task_contexts(data, ended=ended):
        if ctx.session_ended and ctx.next is None:
            tasks[ctx.task.task_id] = _reevaluated(tasks[ctx.task.task_id], ctx, pipeline)
    for s in data.sessions:
        if s.session_id in ended:
            sessions[s.session_id] = decide(s)
    heuristic = {ctx.task.task_id: _reevaluated(tasks[ctx.task.task_id], ctx,
                                                pipeline).evaluation
                 for ctx in task_contexts(data, with_feedback=False, ended=ended)}
    reference = data.reference_ns
    window_from = reference - round(config.classes.window_days * NS_PER_DAY)
    stats = _user_stats(data, tasks, session_scope, sessions, window_from)
    classes = classify_users(stats, reference, config.classes)
    return Predictions(heuristic=heuristic, tasks=tasks, session_scope=session_scope,
                       sessions=sessions, classes=classes)


# -- scoring -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LabelScore:
    """How one label was predicted: ``support`` items carry it, ``predicted`` items were
    given it, ``correct`` both."""

    group: str
    label: str
    support: int
    predicted: int
    correct: int

    @property
    def precision(self) -> float | None:
        """None when nothing was given the label."""
        return self.correct / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        """None when nothing carries the label."""
        return self.correct / self.support if self.support else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@dataclass(frozen=True)
class QualityReport:
    """Every ``LabelScore``, the language accuracy, and the mistakes (for reading)."""

    scores: tuple[LabelScore, ...]
    language_labelled: int
    """Turns whose input has a language label."""
    language_answered: int
    """...of which the identifier gave a language."""
    language_correct: int
    misses: Mapping[str, tuple[str, ...]]
    """Group -> one line per mistake (``expected -> predicted: what``)."""

    def get(self, group: str, label: str) -> LabelScore:
        for s in self.scores:
            if s.group == group and s.label == label:
                return s
        raise KeyError((group, label))

    @property
    def language_accuracy(self) -> float:
        """Correct over labelled turns (no answer counts as wrong)."""
        return self.language_correct / self.language_labelled

    @property
    def language_answered_accuracy(self) -> float:
        """Correct over the turns the identifier answered."""
        return self.language_correct / self.language_answered if self.language_answered \
            else 0.0


def _single(group: str, labels: Iterable[str], pairs: Sequence[tuple[str, str | None]]
            ) -> list[LabelScore]:
    """Scores of a single-label task from (expected, predicted) pairs."""
    return [LabelScore(group, label, sum(1 for e, _ in pairs if e == label),
                       sum(1 for _, p in pairs if p == label),
                       sum(1 for e, p in pairs if e == label == p)) for label in labels]


def _multi(group: str, labels: Iterable[str],
           pairs: Sequence[tuple[frozenset[str], frozenset[str]]]) -> list[LabelScore]:
    """Scores of a multi-label task from (expected set, predicted set) pairs."""
    return [LabelScore(group, label, sum(1 for e, _ in pairs if label in e),
                       sum(1 for _, p in pairs if label in p),
                       sum(1 for e, p in pairs if label in e and label in p))
            for label in labels]


def _clip(text: str | None, n: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def score(data: LabelledSet, predictions: Predictions) -> QualityReport:
    """Compares ``predictions`` with the labels of ``data``."""
    turns = data.turns
    misses: dict[str, list[str]] = {}

    def miss(group: str, expected: object, got: object, what: str) -> None:
        misses.setdefault(group, []).append(f"{expected} -> {got}: {what}")

    scores: list[LabelScore] = []
    for group, evaluations in (
            ("evaluation", predictions.heuristic),
            ("evaluation+feedback", {k: a.evaluation for k, a in predictions.tasks.items()})):
        pairs = []
        for t in turns:
            got = evaluations[t.task_id]
            pairs.append((t.labels.evaluation, got.label))
            if got.label != t.labels.evaluation and group == "evaluation":
                miss(group, t.labels.evaluation, got.label,
                     f"{t.task_id} {_clip(t.input, 40)!r} [{got.source}: {_clip(got.reason)}]")
        scores += _single(group, ("success", "failure"), pairs)

    event_pairs = []
    for t in turns:
        found = frozenset(e.name for e in predictions.tasks[t.task_id].events
                          if e.name in EVENT_NAMES)
        event_pairs.append((t.labels.events, found))
        if found != t.labels.events:
            miss("event", sorted(t.labels.events), sorted(found),
                 f"{t.task_id} {_clip(t.input)!r}")
    scores += _multi("event", EVENT_NAMES, event_pairs)

    sentiment_pairs: list[tuple[str, str | None]] = []
    for t in turns:
        mood = predictions.tasks[t.task_id].sentiment
        got_label = None if mood is None else mood.label
        sentiment_pairs.append((t.labels.sentiment, got_label))
        if got_label != t.labels.sentiment:
            miss("sentiment", t.labels.sentiment, got_label,
                 f"{t.task_id} {_clip(t.input)!r} ({mood.score if mood else None})")
    scores += _single("sentiment", SENTIMENT_LABELS, sentiment_pairs)

    language_pairs: list[tuple[str, str | None]] = []
    for t in turns:
        if t.labels.language is None:
            continue
        got_lang = predictions.tasks[t.task_id].language
        language_pairs.append((t.labels.language, got_lang))
        if got_lang != t.labels.language:
            miss("language", t.labels.language, got_lang, f"{t.task_id} {_clip(t.input)!r}")
    codes = sorted({e for e, _ in language_pairs}, key=lambda c: (c != "en", c))
    scores += _single("language", codes, language_pairs)

    end_pairs: list[tuple[str, str | None]] = []
    for s in data.sessions:
        decided = predictions.sessions[s.session_id]
        end_pairs.append((s.end_reason, decided.end_reason))
        if decided.end_reason != s.end_reason:
            miss("end_reason", s.end_reason, decided.end_reason,
                 f"{s.session_id}: {'; '.join(decided.end_evidence)}")
    scores += _single("end_reason", END_REASONS, end_pairs)

    class_pairs = []
    for user_id, expected in sorted(data.users.items()):
        got_classes = predictions.classes.get(user_id, ())
        labels = frozenset(c.label for c in got_classes)
        class_pairs.append((expected, labels))
        if labels != expected:
            reasons = "; ".join(f"{c.label}: {', '.join(c.reasons)}" for c in got_classes)
            miss("user_class", sorted(expected), sorted(labels), f"{user_id} ({reasons})")
    scores += _multi("user_class", USER_CLASSES, class_pairs)

    return QualityReport(
        scores=tuple(scores), language_labelled=len(language_pairs),
        language_answered=sum(1 for _, p in language_pairs if p is not None),
        language_correct=sum(1 for e, p in language_pairs if e == p),
        misses={k: tuple(v) for k, v in misses.items()})


def score_quality(data: LabelledSet | None = None) -> QualityReport:
    """``score(data, analyze(data))`` over the shipped data set by default."""
    data = load_labelled() if data is None else data
    return score(data, analyze(data))
