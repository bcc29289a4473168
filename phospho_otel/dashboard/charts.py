"""Chart.js configurations (plain dicts, sent as JSON) built from the insights views'
JSON, and the retention heat map's cells. The page's script (``static/dashboard.js``)
hands each configuration to Chart.js unchanged; no figure is computed in the browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Chart", "activity", "insights_charts", "retention_heatmap"]

BLUE, GREEN, RED, GREY, AMBER, PURPLE = (
    "#2563eb", "#16a34a", "#dc2626", "#9ca3af", "#d97706", "#7c3aed")
PALETTE = (BLUE, GREEN, AMBER, RED, PURPLE, GREY, "#0891b2", "#db2777")


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart of a page: ``name`` (its ``data-chart``), a title, a line saying what it
    counts, and its Chart.js configuration."""

    name: str
    title: str
    note: str
    config: dict[str, Any]
    empty: bool


def _config(kind: str, labels: Sequence[Any], datasets: list[dict[str, Any]], *,
            stacked: bool = False, horizontal: bool = False, percent: bool = False,
            x_title: str | None = None, y_title: str | None = None) -> dict[str, Any]:
    value_axis: dict[str, Any] = {"beginAtZero": True, "stacked": stacked}
    if percent:
        value_axis.update(min=0, max=1, ticks={"format": {"style": "percent"}})
    if y_title:
        value_axis["title"] = {"display": True, "text": y_title}
    label_axis: dict[str, Any] = {"stacked": stacked}
    if x_title:
        label_axis["title"] = {"display": True, "text": x_title}
    x, y = (value_axis, label_axis) if horizontal else (label_axis, value_axis)
    options: dict[str, Any] = {
        "animation": False, "responsive": True, "maintainAspectRatio": False,
        "plugins": {"legend": {"display": len(datasets) > 1}},
        "scales": {"x": x, "y": y},
    }
    if horizontal:
        options["indexAxis"] = "y"
    return {"type": kind, "data": {"labels": list(labels), "datasets": datasets},
            "options": options}


def _dataset(label: str, data: Sequence[Any], color: str | Sequence[str]) -> dict[str, Any]:
    return {"label": label, "data": list(data), "backgroundColor": color,
            "borderColor": color, "borderWidth": 1}


def _chart(name: str, title: str, note: str, config: dict[str, Any]) -> Chart:
    empty = not any(ds["data"] for ds in config["data"]["datasets"])
    return Chart(name, title, note, config, empty)


def _range_label(lo: float, hi: float) -> str:
    def short(s: float) -> str:
        if s < 60:
            return f"{s:.3g} s"
        if s < 3600:
            return f"{s / 60:.3g} min"
        if s < 172_800:
            return f"{s / 3600:.3g} h"
        return f"{s / 86_400:.3g} d"
    return f"{short(lo)} to {short(hi)}"


def insights_charts(sessions: Mapping[str, Any], users: Mapping[str, Any],
                    retention: Mapping[str, Any], events: Mapping[str, Any]) -> list[Chart]:
    """The Insights page's charts, from ``/api/insights/sessions``, ``/users``,
    ``/retention`` and ``/api/events``."""
    per_day = sessions["sessions_per_day"]
    lengths = sessions["length_histogram"]
    active = sessions["active_duration"]["histogram"]
    durations = sessions.get("duration_histogram") or []
    by_position = sessions["success_by_position"]
    reasons = sessions["end_reasons"]
    classes = users["class_counts"]
    per_user = users["tasks_per_user"]
    returning = retention["new_vs_returning"]
    event_days = sorted({d["date"] for e in events["events"] for d in e.get("per_day", ())})
    event_series = [e for e in events["events"] if e["tasks"]]

    charts = [
        _chart("sessions_per_day", "Sessions per day", "sessions by the UTC day they started",
               _config("bar", [d["date"] for d in per_day],
                       [_dataset("sessions", [d["sessions"] for d in per_day], BLUE)])),
        _chart("session_duration", "Session duration",
               "sessions by time from first task start to last task end",
               _config("bar", [_range_label(b["min_s"], b["max_s"]) for b in durations],
                       [_dataset("sessions", [b["sessions"] for b in durations], BLUE)])),
        _chart("active_duration", "Active duration", "ended sessions by time spent active "
               "(pauses over the idle timeout left out)",
               _config("bar", [_range_label(b["min_s"], b["max_s"]) for b in active],
                       [_dataset("sessions", [b["sessions"] for b in active], PURPLE)])),
        _chart("tasks_per_session", "Tasks per session", "sessions by how many tasks they had",
               _config("bar", [b["task_count"] for b in lengths],
                       [_dataset("sessions", [b["sessions"] for b in lengths], BLUE)],
                       x_title="tasks")),
        _chart("success_by_position", "Success rate by task position",
               "evaluated tasks that succeeded, by their place in the session (all time)",
               _config("line", [p["position"] for p in by_position],
                       [_dataset("success rate", [p["success_rate"] for p in by_position],
                                 GREEN)], percent=True, x_title="position")),
        _chart("end_reasons", "What ends sessions", "ended sessions by end reason",
               _config("bar", [r["end_reason"] for r in reasons],
                       [_dataset("sessions", [r["sessions"] for r in reasons],
                                 [PALETTE[i % len(PALETTE)] for i in range(len(reasons))])],
                       horizontal=True)),
        _chart("events_over_time", "Events over time",
               "tasks with each event, by UTC day (all time)",
               _config("bar", event_days, [
                   _dataset(e["name"], [dict((d["date"], d["tasks"]) for d in
                                             e.get("per_day", ())).get(day, 0)
                                        for day in event_days], PALETTE[i % len(PALETTE)])
                   for i, e in enumerate(event_series)], stacked=True)),
        _chart("user_classes", "User classes", "users in each class now (a user may have several)",
               _config("bar", list(classes), [_dataset("users", list(classes.values()),
                                                       [PALETTE[i] for i in
                                                        range(len(classes))])])),
        _chart("tasks_per_user", "Tasks per user", "users by how many tasks they had",
               _config("bar", [f"{b['min_tasks']} to {b['max_tasks']}" for b in per_user],
                       [_dataset("users", [b["users"] for b in per_user], BLUE)])),
        _chart("new_vs_returning", "New vs returning users", "users active each UTC day (all time)",
               _config("bar", [d["date"] for d in returning],
                       [_dataset("new", [d["new"] for d in returning], BLUE),
                        _dataset("returning", [d["returning"] for d in returning], GREEN)],
                       stacked=True)),
    ]
    return charts


def activity(tasks_per_day: Sequence[Mapping[str, Any]]) -> Chart:
    """A user's tasks per UTC day (``/api/users/{id}``'s ``tasks_per_day``)."""
    return _chart("activity", "Activity", "tasks per UTC day",
                  _config("bar", [d["date"] for d in tasks_per_day],
                          [_dataset("tasks", [d["tasks"] for d in tasks_per_day], BLUE)]))


def retention_heatmap(retention: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per cohort: its start, its size, and for each period since, the users
    active and their share of the cohort (the cell's shade)."""
    rows = []
    for cohort in retention["cohorts"]:
        size = cohort["users"]
        rows.append({"start": cohort["start"], "users": size,
                     "cells": [{"active": n, "share": (n / size) if size else 0.0}
                               for n in cohort["active"]]})
    return rows
