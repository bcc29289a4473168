"""``Analyzer``: the insights' background worker, off the ingest path.

It reads the store's pending work (``store.api.AnalysisReader.pending_analysis``: tasks
new or changed, sessions with a new end or feedback), and for each touched session:

1. analyses each changed task — its evaluation (``evaluation.EvaluationPipeline``: user
   feedback first, then the heuristics), its events (``events.EventDetector``), the
   sentiment and language of its input (``text``), its tokens and cost (``usage``, from
   its stored trace: the traces of a pass's tasks are read together, at most
   ``USAGE_SPANS_PER_READ`` spans at a time) — and re-evaluates the task before it, whose
   "next message" has changed (its events, sentiment and language are kept, its usage
   read again);
2. decides the session's state, end reason and usage (``endings.decide_session``),
   evaluates it when it has ended (``evaluation.evaluate_session``) and adds its
   session-scope events;
3. writes all of it, with the work it completes, in one transaction
   (``AnalysisStore.write_analysis``): after a crash it resumes where its last commit
   left off, so nothing is analysed twice and nothing is skipped.

Each pass also ends the sessions idle for the inactivity timeout, asks the LLM judge and
the LLM-question events (only when ``InsightsConfig.judge`` is configured) about the tasks
still waiting for them, posts the webhooks of new events, and, when something changed,
re-decides every user's classes (``classes.classify_users``) over the store's
``user_facts`` (which also sum each user's usage, stored with the classes): at most every
``classify_every_s`` under load, every ``CAUGHT_UP_CLASSIFY_S`` once caught up.

``reanalyze(from_ns, to_ns)`` runs steps 1-3 over every task started in a range (after
the rules changed: ``phospho-otel reevaluate``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from phospho_otel.insights.classes import classify_users
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.endings import decide_session
from phospho_otel.insights.evaluation import EvaluationPipeline, evaluate_session
from phospho_otel.insights.events import EventDetector, llm_event_messages, parse_llm_event_answer
from phospho_otel.insights.llm import JUDGE_SOURCE, LLMClient, LLMJudge
from phospho_otel.insights.prices import PriceTable
from phospho_otel.insights.textual import TextAnalysis, analyze_texts
from phospho_otel.insights.usage import USAGE_KEYS, task_usage
from phospho_otel.insights.webhooks import WebhookSender, event_payload
from phospho_otel.model.analysis import (
    DetectedEvent,
    SessionAnalysis,
    TaskAnalysis,
    Usage,
    UserAnalysis,
)
from phospho_otel.model.records import SessionEventRecord, TaskRecord
from phospho_otel.store.api import (
    AnalysisStore,
    AnalysisUpdate,
    Page,
    Store,
    StoreReader,
    TaskFilter,
    TaskRow,
)

__all__ = ["Analyzer", "AnalyzerStats"]

logger = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
PREVIOUS_TASKS = 5
"""Earlier tasks of the session an evaluator sees (``TaskContext.previous``)."""
SESSION_TASKS = 10_000
"""A session's state is decided from its first this-many tasks at most."""
_USER_FEEDBACK = "user_feedback"
CAUGHT_UP_CLASSIFY_S = 5.0
"""Once caught up, the classes are decided again at most this often (seconds)."""
USAGE_SPANS_PER_READ = 50_000
"""The traces a pass reads for its tasks' usage are loaded at most about this many spans
at a time (``TraceReader.get_traces``' ``max_total_spans``)."""


@dataclass
class AnalyzerStats:
    """What the analyzer has done since it started (for ``/healthz`` and benchmarks)."""

    tasks_analyzed: int = 0
    sessions_analyzed: int = 0
    sessions_ended: int = 0
    classifications: int = 0
    judge_verdicts: int = 0
    judge_unavailable: int = 0
    passes: int = 0
    errors: int = 0
    last_error: str = ""
    busy_s: float = 0.0
    """Seconds spent working (not waiting)."""
    lag_tasks: int = 0
    """Items still pending after the last pass."""


def _system_prompt(task: TaskRecord) -> str | None:
    """``metadata.system_prompt`` when it is a string (metadata is JSON text)."""
    if '"system_prompt"' not in task.metadata:
        return None
    return _system_prompt_of(task.metadata)


@functools.lru_cache(maxsize=1024)
def _system_prompt_of(metadata: str) -> str | None:
    """``_system_prompt`` of a metadata text (the tasks of an app and of a session mostly
    share theirs: it is decoded once)."""
    try:
        value = json.loads(metadata).get("system_prompt")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _context(rows: Sequence[TaskRow], i: int, events: Sequence[DetectedEvent] = (), *,
             session_ended: bool = False) -> TaskContext:
    """The context of ``rows[i]`` among its session's ``rows``."""
    row = rows[i]
    return TaskContext(
        task=row.task, feedback=row.feedback,
        previous=tuple(r.task for r in rows[max(0, i - PREVIOUS_TASKS):i]),
        next=rows[i + 1].task if i + 1 < len(rows) else None,
        system_prompt=_system_prompt(row.task), position=row.position,
        events=tuple(e.name for e in events), session_ended=session_ended)


@dataclass
class _Unit:
    """A touched session (or a task without one: ``session_id`` None) as read: its tasks
    in order, their stored analyses, the indexes to analyse again, its session events and
    the events of its session scope."""

    session_id: str | None
    rows: list[TaskRow]
    known: dict[str, TaskAnalysis]
    redo: set[int]
    session_events: Sequence[SessionEventRecord]
    session_scope_events: tuple[DetectedEvent, ...]


class Analyzer:
    """Runs the insights over ``store`` (an ``AnalysisStore``) with ``config``.

    ``start()`` runs passes in a daemon thread every ``interval_s`` (at once again while
    work remains); ``run_once()`` runs one pass in the caller (tests, the CLI). ``clock``
    gives "now" in ns (the inactivity timeout counts from it).
    """

    def __init__(self, store: Store, config: InsightsConfig | None = None, *,
                 interval_s: float = 0.5, batch: int = 1000, classify_every_s: float = 30.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if not isinstance(store, AnalysisStore):
            raise TypeError(f"{type(store).__name__} keeps no analysis results")
        self.store = store
        self._writer: AnalysisStore = store
        self.config = config or InsightsConfig()
        self.interval_s = interval_s
        self.batch = batch
        self.classify_every_s = classify_every_s
        self.clock = clock
        self.stats = AnalyzerStats()
        self.pipeline = EvaluationPipeline()
        self.detector = EventDetector(self.config.events)
        self._llm_events = self.detector.llm_definitions()
        self._webhooks = {d.name: d.webhook for d in self.config.events if d.webhook}
        self._sender = (WebhookSender(**dataclasses.asdict(self.config.webhooks))
                        if self._webhooks else None)
        self._judge: LLMJudge | None = None
        self._llm: LLMClient | None = None
        if self.config.judge is not None:
            self._llm = LLMClient(self.config.judge)
            self._judge = LLMJudge(self._llm)
        self._judge_retry_at = 0.0
        self._changed_since_classify = True
        self._last_classify = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="phospho-analyzer",
                                            daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a pass now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._sender is not None:
            self._sender.close(timeout_s)
        if self._llm is not None:
            self._llm.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                more = self.run_once()
            except Exception as exc:  # a failed pass is retried: the work stays pending
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("insights pass failed (retried): %s", self.stats.last_error)
                more = False
                self._stop.wait(min(5.0, max(self.interval_s, 1.0)))
            if not more:
                self._wake.wait(self.interval_s)
                self._wake.clear()

    # -- one pass ----------------------------------------------------------------------

    def run_once(self) -> bool:
        """One pass; True when work remains (a full batch was taken)."""
        started = time.perf_counter()
        now = self.clock()
        with self.store.read() as reader:
            pending = reader.pending_analysis(self.batch)
            timeout_ns = int(self.config.sessions.inactivity_timeout_s * NS_PER_S)
            idle = reader.sessions_idle_since(now - timeout_ns, self.batch)
            tasks, sessions, events = self._analyze(
                reader, pending.tasks, [*pending.session_ids, *idle], now)
        work = bool(pending.tasks or pending.session_ids)
        if work or sessions:
            self._writer.write_analysis(AnalysisUpdate(tasks, sessions, token=pending.token))
            self._post_webhooks(events)
            self._changed_since_classify = True
        self.stats.tasks_analyzed += len(tasks)
        self.stats.sessions_analyzed += len(sessions)
        self.stats.sessions_ended += sum(s.state == "ended" for s in sessions)
        self._run_judge(now)
        more = len(pending.tasks) >= self.batch or len(idle) >= self.batch
        self._classify_if_due(now, caught_up=not more)
        self.stats.passes += 1
        self.stats.busy_s += time.perf_counter() - started
        self.stats.lag_tasks = len(pending.tasks) if more else 0
        return more

    def reanalyze(self, from_ns: int | None = None, to_ns: int | None = None, *,
                  page_size: int = 500) -> int:
        """Analyse again every task started in ``[from_ns, to_ns)`` and their sessions;
        returns the number of tasks."""
        done = 0
        cursor = None
        while True:
            with self.store.read() as reader:
                listing = reader.list_tasks(
                    TaskFilter(from_ns, to_ns),
                    Page("start_time", descending=False, limit=page_size, cursor=cursor),
                    with_total=False)
                ids = [(row.task.task_id, row.task.session_id) for row in listing.items]
                tasks, sessions, _ = self._analyze(reader, ids, [], self.clock())
            if tasks or sessions:
                self._writer.write_analysis(AnalysisUpdate(tasks, sessions))
            done += len(ids)
            if listing.next_cursor is None:
                break
            cursor = listing.next_cursor
        self._changed_since_classify = True
        self._classify_if_due(self.clock(), force=True)
        return done

    # -- tasks and sessions --------------------------------------------------------------

    def _analyze(self, reader: StoreReader, changed_tasks: Sequence[tuple[str, str | None]],
                 session_ids: Iterable[str], now: int
                 ) -> tuple[list[TaskAnalysis], list[SessionAnalysis], list[TaskAnalysis]]:
        """Analyses of the changed tasks (``(task id, session id)``) and their
        predecessors, of the touched sessions, and the task analyses with events they did
        not have before (for webhooks).

        Three steps: read what each touched session holds; analyse the text of every task
        whose text is new, together (``textual.analyze_texts``); then evaluate the tasks (they see
        the events) and decide the sessions."""
        changed = {task_id for task_id, _ in changed_tasks}
        by_session: dict[str, None] = {}
        units: list[_Unit] = []
        for task_id, task_session in changed_tasks:
            if task_session is not None:
                by_session[task_session] = None
                continue
            row = reader.get_task(task_id)
            if row is not None:
                old = reader.task_analyses([task_id]).get(task_id)
                units.append(_Unit(None, [row], {task_id: old} if old else {}, {0}, (), ()))
        for session_id in session_ids:
            by_session[session_id] = None
        for session_id in by_session:
            rows = reader.session_tasks(session_id, SESSION_TASKS)
            if not rows:
                continue
            known = reader.task_analyses(r.task.task_id for r in rows)
            redo = {i for i, r in enumerate(rows) if r.task.task_id in changed
                    or r.task.task_id not in known
                    or known[r.task.task_id].position != r.position}
            redo |= {i - 1 for i in redo if i > 0}
            units.append(_Unit(session_id, rows, known, redo,
                               reader.session_events(session_id),
                               tuple(self.detector.session_events([r.task for r in rows]))))
        # the text of new and changed tasks, in one batch
        fresh = [(u, i) for u in units for i in sorted(u.redo)
                 if u.rows[i].task.task_id in changed or u.rows[i].task.task_id not in u.known]
        texts = analyze_texts(self.detector, [_context(u.rows, i) for u, i in fresh])
        text_of = {(id(u), i): text for (u, i), text in zip(fresh, texts, strict=True)}
        usage_of = _usages(reader, [u.rows[i].task for u in units for i in u.redo],
                           self.config.prices)
        out_tasks: list[TaskAnalysis] = []
        out_sessions: list[SessionAnalysis] = []
        fresh_events: list[TaskAnalysis] = []
        for u in units:
            analyses: list[TaskAnalysis] = []
            for i, r in enumerate(u.rows):
                old = u.known.get(r.task.task_id)
                if i not in u.redo and old is not None:
                    analyses.append(old)
                    continue
                text = text_of.get((id(u), i))
                if text is None:  # text unchanged: its events, sentiment, language stand
                    assert old is not None
                    text = TextAnalysis(old.events, old.sentiment, old.language)
                analysis = self._task(_context(u.rows, i, text.events), text, old, now,
                                      usage_of.get(r.task.task_id))
                analyses.append(analysis)
                self._note_new_events(analysis, old, fresh_events)
            if u.session_id is not None:
                session = self._session(u, analyses, now)
                last = len(u.rows) - 1
                if session.state == "ended" and analyses[last].evaluation.label == "unknown":
                    # its user left after the last task: evaluate it again knowing that
                    a = analyses[last]
                    ctx = _context(u.rows, last, a.events, session_ended=True)
                    analyses[last] = self._task(
                        ctx, TextAnalysis(a.events, a.sentiment, a.language), a, now, a.usage)
                    u.redo.add(last)
                    session = self._session(u, analyses, now)
                out_sessions.append(session)
            out_tasks += [a for i, a in enumerate(analyses) if i in u.redo]
        return out_tasks, out_sessions, fresh_events

    def _task(self, ctx: TaskContext, text: TextAnalysis, old: TaskAnalysis | None,
              now: int, usage: Usage | None) -> TaskAnalysis:
        """A task's analysis from its context, its text's analysis and its usage; a verdict
        the LLM judge gave before stands (unless feedback or a fact overrides it)."""
        judged = old is not None and old.evaluation.source == JUDGE_SOURCE
        evaluation = self.pipeline.evaluate(
            ctx, judge=old.evaluation if judged and old is not None else None)
        task = ctx.task
        pending = self._llm is not None and evaluation.source != _USER_FEEDBACK and not judged
        return TaskAnalysis(task.task_id, task.session_id, task.user_id, task.start_ns,
                            ctx.position, evaluation, text.events, text.sentiment,
                            text.language, now, pending, usage)

    @staticmethod
    def _note_new_events(analysis: TaskAnalysis, old: TaskAnalysis | None,
                         out: list[TaskAnalysis]) -> None:
        before = set() if old is None else {e.name for e in old.events}
        if any(e.name not in before for e in analysis.events):
            out.append(analysis)

    def _session(self, unit: _Unit, analyses: Sequence[TaskAnalysis],
                 now: int) -> SessionAnalysis:
        assert unit.session_id is not None
        pairs = [(r.task, a) for r, a in zip(unit.rows, analyses, strict=True)]
        user_id = min((r.task.user_id for r in unit.rows if r.task.user_id), default=None)
        decided = decide_session(unit.session_id, user_id, pairs, unit.session_events, now,
                                 self.config.sessions,
                                 session_scope_events=unit.session_scope_events)
        if decided.state == "ended":
            decided = decided._replace(evaluation=evaluate_session(
                [(t, a.evaluation) for t, a in pairs], _latest_feedback(unit.session_events)))
        return decided

    # -- LLM judge and LLM-question events ------------------------------------------------

    def _run_judge(self, now: int) -> None:
        if self._judge is None or time.monotonic() < self._judge_retry_at:
            return
        assert self._llm is not None
        with self.store.read() as reader:
            ids = reader.judge_pending(self.config.judge.max_concurrency * 4
                                       if self.config.judge else 16)
            if not ids:
                return
            current = reader.task_analyses(ids)
            contexts: list[tuple[TaskAnalysis, TaskContext]] = []
            for task_id in ids:
                row = reader.get_task(task_id)
                old = current.get(task_id)
                if row is None or old is None:
                    continue
                rows = (reader.session_tasks(row.task.session_id, SESSION_TASKS)
                        if row.task.session_id else [row])
                i = next((k for k, r in enumerate(rows) if r.task.task_id == task_id), 0)
                contexts.append((old, _context(rows, i, old.events)))
        verdicts = self._judge.judge_many([c for _, c in contexts])
        questions = [(d, ctx) for _, ctx in contexts for d in self._llm_events]
        answers = self._llm.complete_many([llm_event_messages(d, c) for d, c in questions])
        found: dict[str, list[DetectedEvent]] = {}
        failed: set[str] = set()
        for (defn, ctx), answer in zip(questions, answers, strict=True):
            if isinstance(answer, BaseException):
                failed.add(ctx.task.task_id)
                continue
            event = parse_llm_event_answer(defn, answer)
            if event is not None:
                found.setdefault(ctx.task.task_id, []).append(event)
        done: list[TaskAnalysis] = []
        for (old, ctx), verdict in zip(contexts, verdicts, strict=True):
            task_id = ctx.task.task_id
            if verdict is None or task_id in failed:
                self.stats.judge_unavailable += 1
                continue
            self.stats.judge_verdicts += 1
            evaluation = self.pipeline.evaluate(ctx, judge=verdict)
            events = old.events + tuple(e for e in found.get(task_id, ())
                                        if e.name not in {x.name for x in old.events})
            done.append(old._replace(evaluation=evaluation, events=events,
                                     judge_pending=False, analyzed_ns=now))
        if done:
            self._writer.write_analysis(AnalysisUpdate(done))
            self._post_webhooks([a for a, (old, _) in zip(done, contexts, strict=False)
                                 if len(a.events) > len(old.events)])
            self._changed_since_classify = True
        if len(done) < len(contexts):
            assert self.config.judge is not None
            self._judge_retry_at = time.monotonic() + self.config.judge.retry_later_s
            logger.warning("LLM judge unavailable for %d task(s): heuristics stand, retry"
                           " in %.0f s", len(contexts) - len(done),
                           self.config.judge.retry_later_s)

    # -- webhooks -------------------------------------------------------------------------

    def _post_webhooks(self, analyses: Iterable[TaskAnalysis]) -> None:
        if self._sender is None:
            return
        for a in analyses:
            for e in a.events:
                url = self._webhooks.get(e.name)
                if url:
                    self._sender.send(url, event_payload(
                        e, task_id=a.task_id, session_id=a.session_id, user_id=a.user_id,
                        time_ns=a.start_ns))

    # -- user classes ---------------------------------------------------------------------

    def _classify_if_due(self, now: int, *, force: bool = False,
                         caught_up: bool = False) -> None:
        """Classify every user again when something changed and it is due: every
        ``classify_every_s`` under load, or ``CAUGHT_UP_CLASSIFY_S`` after the last time
        once the analyzer has caught up (so that a quiet store shows fresh classes)."""
        elapsed = time.monotonic() - self._last_classify
        due = elapsed >= self.classify_every_s or (
            caught_up and elapsed >= min(CAUGHT_UP_CLASSIFY_S, self.classify_every_s))
        if not self._changed_since_classify or not (due or force):
            return
        settings = self.config.classes
        with self.store.read() as reader:
            reference = reader.latest_activity_ns()
            if reference is None:
                return
            self._last_classify = time.monotonic()
            self._changed_since_classify = False
            window_from = reference - int(settings.window_days * NS_PER_DAY)
            facts = reader.user_facts(window_from)
        classes = classify_users(facts, reference, settings)
        users = [UserAnalysis(f.user_id, classes.get(f.user_id, ()), f.event_counts,
                              f.evaluated_count - f.failure_count, f.failure_count, now,
                              f.usage)
                 for f in facts]
        self._writer.write_analysis(AnalysisUpdate(users=users))
        self.stats.classifications += 1


def _usages(reader: StoreReader, tasks: Iterable[TaskRecord],
            prices: PriceTable | None = None) -> dict[str, Usage]:
    """The usage of each of ``tasks`` that reports any (``usage.task_usage``, costs not
    reported priced from ``prices``), by task id,
    from their traces read in as few ``get_traces`` calls as ``USAGE_SPANS_PER_READ``
    allows (one, unless the traces are large)."""
    spans_of: dict[bytes, list[tuple[str, bytes]]] = {}
    for task in tasks:
        spans_of.setdefault(task.trace_id, []).append((task.task_id, task.span_id))
    mentioning = reader.traces_mentioning(spans_of, USAGE_KEYS)  # the rest report none
    trace_ids = [t for t in spans_of if t in mentioning]
    out: dict[str, Usage] = {}
    start = 0
    while start < len(trace_ids):
        traces = reader.get_traces(trace_ids[start:], max_total_spans=USAGE_SPANS_PER_READ)
        if not traces:
            break  # none of the rest is stored
        for trace in traces:
            for task_id, span_id in spans_of[trace.trace_id]:
                usage = task_usage(trace, span_id, prices)
                if usage.known:
                    out[task_id] = usage
        if sum(len(t.spans) for t in traces) < USAGE_SPANS_PER_READ:
            break  # not cut by the bound: every stored trace of the rest was loaded
        start = trace_ids.index(traces[-1].trace_id, start) + 1
    return out


def _latest_feedback(events: Sequence[SessionEventRecord]) -> SessionEventRecord | None:
    feedback = [e for e in events if e.kind == "feedback"]
    return max(feedback, key=lambda e: (e.time_ns, e.trace_id, e.span_id)) if feedback else None
