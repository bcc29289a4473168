"""The dashboard tests' data set, logged through the real SDK by a separate process
(``python workload.py <OTLP/HTTP endpoint> [--token T] [--small]``; ``conftest.py`` runs
it against a live ``phospho-otel serve``).

A small, realistic support chat: three users, six sessions, 25 tasks, backfilled over
the last five days (so that the sessions-per-day, retention and ending charts have
something to draw) plus one session happening now:

* ``ana@example.com`` (an id that must be quoted in URLs): ``s-ana-1`` (5 tasks, four
  days ago, ``version_id`` 1.0.0, feedback success on its 2nd task, ends with thanks)
  and ``s-ana-2`` (4 tasks, two days ago, 1.1.0, a refund question, ended explicitly
  with ``end_session``);
* ``ben``: ``s-ben-1`` (4 tasks, three days ago, 1.0.0, feedback failure with notes on
  its 3rd task, ends with the frustrated "this is useless, you are not helping") and
  ``s-ben-2`` (5 tasks, now, 1.1.0: each a ``with task(...)`` holding a retrieval and an
  LLM call as child spans of the OpenTelemetry tracer, with tokens; the last one raises,
  so it is an error);
* ``chloe``: ``s-chloe-1`` (4 tasks, yesterday, 1.0.1, a refund question) and
  ``s-chloe-2`` (3 tasks, five days ago, 1.0.0, no feedback: the feedback test flags
  its first task).

``--small`` logs only ``s-small`` (2 tasks of user ``dana``), for the token server.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone

from opentelemetry import trace

import phospho_otel as phospho

__all__ = [
    "EXPLICIT_SESSION",
    "FEEDBACK_TASK",
    "LIVE_SESSION",
    "SESSIONS",
    "SMALL_SESSION",
    "SMALL_TASKS",
    "TASKS",
    "USERS",
    "main",
]

TASKS = 25
SESSIONS = {"s-ana-1": 5, "s-ana-2": 4, "s-ben-1": 4, "s-ben-2": 5, "s-chloe-1": 4,
            "s-chloe-2": 3}
"""Session id -> task count."""
USERS = {"ana@example.com": ("s-ana-1", "s-ana-2"), "ben": ("s-ben-1", "s-ben-2"),
         "chloe": ("s-chloe-1", "s-chloe-2")}
LIVE_SESSION = "s-ben-2"
"""The session logged now (active; its tasks have child spans; its last one errs)."""
EXPLICIT_SESSION = "s-ana-2"
FEEDBACK_TASK = "t-chloe-2-1"
"""A task no feedback names: the feedback test flags it."""
SMALL_SESSION = "s-small"
SMALL_TASKS = 2

_CONVERSATIONS: dict[str, tuple[str, str, int, str, list[tuple[str, str]]]] = {
    # session id: (user, version_id, days ago, model, [(input, output), ...])
    "s-ana-1": ("ana@example.com", "1.0.0", 4, "gpt-4o-mini", [
        ("Hi, I can't log in to my account", "Sorry to hear that. Did you try resetting "
         "your password?"),
        ("How do I reset my password?", "Open Settings > Security and click 'Reset "
         "password'; we will email you a link."),
        ("I didn't get the email", "It can take a few minutes; please also check your spam "
         "folder."),
        ("Found it in spam, it worked", "Great! You should be able to log in now."),
        ("Thanks a lot, that was helpful!", "You're welcome, have a nice day!"),
    ]),
    "s-ana-2": ("ana@example.com", "1.1.0", 2, "gpt-4o", [
        ("I was charged twice this month", "I can see two charges on your card; one will "
         "be refunded."),
        ("When will I get the refund?", "Refunds take 5 to 10 business days."),
        ("Can you send me the invoice?", "I have emailed the invoice to ana@example.com."),
        ("ok bye", "Goodbye!"),
    ]),
    "s-ben-1": ("ben", "1.0.0", 3, "gpt-4o-mini", [
        ("How do I export my data as CSV?", "Go to Reports and click Export."),
        ("There is no Export button in Reports", "It is in the top right corner of the "
         "page."),
        ("I told you, there is no such button", "Please try reloading the page."),
        ("this is useless, you are not helping", "I'm sorry. Let me connect you with a "
         "human agent."),
    ]),
    "s-chloe-1": ("chloe", "1.0.1", 1, "gpt-4o", [
        ("Hello! Can I upgrade to the Pro plan?", "Yes: Billing > Plans > Pro."),
        ("Will I get a refund for the unused days of my plan?", "Yes, the unused days "
         "are credited to your next invoice."),
        ("Does Pro include the API?", "Yes, Pro includes API access with 10,000 calls a "
         "day."),
        ("Perfect, thank you", "Happy to help!"),
    ]),
    "s-chloe-2": ("chloe", "1.0.0", 5, "gpt-4o-mini", [
        ("What are your opening hours?", "Support answers around the clock."),
        ("Do you have a mobile app?", "Yes, for iOS and Android."),
        ("Where do I download it?", "From the App Store or Google Play."),
    ]),
}
_LIVE: tuple[str, str, list[tuple[str, str]]] = ("ben", "1.1.0", [
    ("Which plans include SSO?", "SSO is included in the Business and Enterprise plans."),
    ("How much is Business?", "Business is 25 USD per user per month."),
    ("Can I pay yearly?", "Yes, yearly billing saves 15%."),
    ("Is there a discount for nonprofits?", "Yes, nonprofits get 50% off."),
    ("Send me a quote for 40 seats", ""),  # raises: the model is down
])


def _backfilled(now: datetime) -> None:
    for session_id, (user_id, version, days_ago, model, turns) in _CONVERSATIONS.items():
        start = (now - timedelta(days=days_ago)).replace(microsecond=0)
        prefix = "t-" + session_id.removeprefix("s-")
        for k, (question, answer) in enumerate(turns, start=1):
            t0 = start + timedelta(seconds=45 * (k - 1))
            phospho.log(question, answer, task_id=f"{prefix}-{k}", session_id=session_id,
                        user_id=user_id, name="chat",
                        metadata={"version_id": version, "model": model, "turn": k},
                        raw_input={"messages": [{"role": "user", "content": question}]},
                        start_time=t0, end_time=t0 + timedelta(seconds=1 + k % 3))
    day = timedelta(days=1)
    phospho.user_feedback("t-ana-1-2", "success", notes="clear steps",
                          at=now - 4 * day + timedelta(minutes=2))
    phospho.user_feedback("t-ben-1-3", "failure", notes="the button is not there",
                          at=now - 3 * day + timedelta(minutes=3))
    phospho.end_session(EXPLICIT_SESSION, user_id="ana@example.com",
                        at=now - 2 * day + timedelta(minutes=4))


def _live() -> None:
    user_id, version, turns = _LIVE
    tracer = trace.get_tracer("support-bot")
    with phospho.session(LIVE_SESSION, user_id=user_id, metadata={"version_id": version}):
        for k, (question, answer) in enumerate(turns, start=1):
            try:
                with phospho.task(input=question, task_id=f"t-ben-2-{k}", name="chat",
                                  metadata={"model": "gpt-4o", "turn": k}) as t:
                    with tracer.start_as_current_span("retrieve", attributes={
                            "gen_ai.operation.name": "retrieval", "retrieval.top_k": 3}):
                        pass
                    with tracer.start_as_current_span("chat gpt-4o", attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o",
                            "gen_ai.usage.input_tokens": 120 + 10 * k,
                            "gen_ai.usage.output_tokens": 30 + k}):
                        if not answer:
                            raise RuntimeError("model unavailable: 503 from the provider")
                    t.set_output(answer)
            except RuntimeError:
                pass


def _small(now: datetime) -> None:
    for k in range(1, SMALL_TASKS + 1):
        t0 = now - timedelta(hours=1, seconds=-30 * k)
        phospho.log(f"question {k} from dana", f"answer {k}", task_id=f"t-small-{k}",
                    session_id=SMALL_SESSION, user_id="dana",
                    metadata={"version_id": "1.0.0"}, start_time=t0,
                    end_time=t0 + timedelta(seconds=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", help="OTLP/HTTP base URL, e.g. http://127.0.0.1:8318")
    parser.add_argument("--token", default=None, help="the server's bearer token")
    parser.add_argument("--small", action="store_true", help="only the small session")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    phospho.init(endpoint=args.endpoint, protocol="http/protobuf", headers=headers,
                 service_name="support-bot")
    now = datetime.now(timezone.utc)
    if args.small:
        _small(now)
    else:
        _backfilled(now)
        _live()
    ok = phospho.flush(30)
    stats = phospho.stats()
    phospho.shutdown()
    if not ok or stats.dropped or stats.failed:
        print(f"not all delivered: {stats}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
