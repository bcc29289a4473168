"""Insights quality: precision / recall / F1 of the built-in analysis on the labelled data
set that ships in ``tests/insights/data/conversations.yaml`` (or the one given with
``--data``, e.g. the held-out ``tests/insights/data/holdout.yaml`` that the detectors were
not tuned on), and its throughput.

    .venv/bin/python benchmarks/bench_insights_quality.py [--data PATH] [--misses] [--seconds S]

The analysis is the analyzer's, with the shipped defaults (``load_config(None)``), run as
pure functions over the data set's records (``tests/insights/labelled.py``: no server, no
store): the evaluation pipeline (``evaluation``: feedback withheld, i.e. the heuristics
alone; ``evaluation+feedback``: as the analyzer runs it, the users' feedback first), each
labelled default event, the sentiment and the language of each input, each session's end
reason (every session has ended: decided a day after the last activity) and each user's
classes (as of the latest activity). For each label: ``support`` items carry it,
``predicted`` were given it, ``correct`` both; precision = correct / predicted, recall =
correct / support ("-" when undefined). ``--misses`` lists every mistake with the
detector's reason.

Throughput: the per-task analysis (evaluation with feedback withheld, so that every
heuristic runs; events; sentiment; language), looped over the data set's tasks for
``--seconds`` in one thread (one core), after a warm-up that loads the models; also each
part alone, in µs per task.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from phospho_otel.insights.config import load_config
from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.evaluation import EvaluationPipeline
from phospho_otel.insights.events import EventDetector
from phospho_otel.insights.text import language, sentiment
from tests.insights.labelled import (
    DATA_PATH,
    LabelledSet,
    LabelScore,
    QualityReport,
    analyze,
    analyze_task,
    load_labelled,
    score,
    task_contexts,
)


def _fmt(x: float | None) -> str:
    return "    -" if x is None else f"{x:5.2f}"


def print_table(report: QualityReport) -> None:
    """The precision / recall / F1 table, one line per label."""
    print(f"{'group':<20} {'label':<24} {'support':>7} {'predicted':>9} {'correct':>7} "
          f"{'prec':>5} {'recall':>6} {'F1':>5}")
    group = None
    for s in report.scores:
        if group is not None and s.group != group:
            print()
        group = s.group
        print(f"{s.group:<20} {s.label:<24} {s.support:>7} {s.predicted:>9} {s.correct:>7} "
              f"{_fmt(s.precision)} {_fmt(s.recall):>6} {_fmt(s.f1)}")
    print()
    print(f"language accuracy: {report.language_accuracy:.2f} of {report.language_labelled} "
          f"labelled inputs ({report.language_answered} answered, "
          f"{report.language_answered_accuracy:.2f} of those right; no answer = wrong)")
    macro = _macro(report.scores)
    print("macro F1: " + ", ".join(f"{g} {f:.2f}" for g, f in macro.items()))


def _macro(scores: Sequence[LabelScore]) -> dict[str, float]:
    """Mean F1 over each group's labels that have an F1."""
    groups: dict[str, list[float]] = {}
    for s in scores:
        f1 = s.f1
        groups.setdefault(s.group, [])
        if f1 is not None:
            groups[s.group].append(f1)
    return {g: sum(v) / len(v) for g, v in groups.items() if v}


def _rate(fn: Callable[[TaskContext], object], contexts: Sequence[TaskContext],
          seconds: float) -> tuple[float, int]:
    """(tasks per second, tasks done) of ``fn`` looped over ``contexts`` for ``seconds``."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for ctx in contexts:
            fn(ctx)
        done += len(contexts)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start), done


def print_throughput(data: LabelledSet, seconds: float) -> None:
    """Tasks per second of the per-task analysis, and µs per task of each part."""
    contexts = task_contexts(data, with_feedback=False)
    pipeline = EvaluationPipeline()
    detector = EventDetector(load_config(None).events)
    for ctx in contexts:  # warm-up: loads VADER and py3langid, fills caches
        analyze_task(ctx, pipeline, detector)
    rate, done = _rate(lambda ctx: analyze_task(ctx, pipeline, detector), contexts, seconds)
    words = sum(len((c.task.input or "").split()) + len((c.task.output or "").split())
                for c in contexts) / len(contexts)
    print(f"throughput (one thread): {rate:,.0f} tasks/s = {1e6 / rate:.0f} µs per task "
          f"({done:,} tasks of {words:.0f} words on average, input + output)")
    parts: list[tuple[str, Callable[[TaskContext], object]]] = [
        ("evaluation", pipeline.evaluate),
        ("events", detector.task_events),
        ("sentiment", lambda ctx: sentiment(ctx.task.input)),
        ("language", lambda ctx: language(ctx.task.input)),
    ]
    each = []
    for name, fn in parts:
        part_rate, _ = _rate(fn, contexts, max(seconds / 4, 0.2))
        each.append(f"{name} {1e6 / part_rate:.0f} µs")
    print("  per task: " + ", ".join(each))


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DATA_PATH, metavar="PATH",
                        help="the labelled data set to score (default: the shipped "
                             f"{_shown(DATA_PATH)})")
    parser.add_argument("--misses", action="store_true", help="list every mistake")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long to measure the throughput (default 3)")
    args = parser.parse_args(argv)
    data = load_labelled(args.data)
    turns = data.turns
    print(f"data set: {_shown(args.data)}")
    print(f"  {len(data.users)} users, {len(data.sessions)} sessions, {len(turns)} "
          f"turns ({sum(1 for t in turns if t.feedback)} with feedback)\n")
    report = score(data, analyze(data))
    print_table(report)
    if args.misses:
        for group, lines in report.misses.items():
            print(f"\n-- misses: {group} ({len(lines)})")
            for line in lines:
                print("  " + line)
    print()
    print_throughput(data, args.seconds)


if __name__ == "__main__":
    main()
