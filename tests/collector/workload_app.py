"""A small LLM-app stand-in for the collector tests, run as its own process.

Logs ``sessions x tasks_per_session`` tasks through ``phospho_otel`` (round-robin over
the sessions, so that every session is in flight during the whole run), sessions numbered
from ``first_session``, session ``i`` belonging to user ``i % users``, and feedback on
every ``feedback_every``-th task. Prints ``logged N`` after each task, then flushes and
prints ``result {json}``: every task id with its session, the feedback given, the SDK's
counters and whether the flush completed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import phospho_otel as phospho


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--protocol", default="http/protobuf")
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--tasks-per-session", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="tasks per second, 0 = max")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--feedback-every", type=int, default=0)
    parser.add_argument("--first-session", type=int, default=0,
                        help="index of the first session (sessions are numbered from it)")
    args = parser.parse_args()

    phospho.init(endpoint=args.endpoint, protocol=args.protocol,
                 service_name="collector-route-test")
    tasks: list[dict[str, str]] = []
    feedback: dict[str, str] = {}
    started = time.monotonic()
    n = 0
    for t in range(args.tasks_per_session):
        for s in range(args.first_session, args.first_session + args.sessions):
            session_id = f"sess-{args.run_id}-{s:04d}"
            user_id = f"user-{args.run_id}-{s % args.users:03d}"
            with phospho.session(session_id=session_id, user_id=user_id):
                logged = phospho.log(
                    input=f"question {t} of session {s}",
                    output=f"answer {t} of session {s}",
                    metadata={"turn": t},
                    name="answer",
                )
                n += 1
                if args.feedback_every and n % args.feedback_every == 0:
                    flag = "success" if (n // args.feedback_every) % 2 else "failure"
                    phospho.user_feedback(logged.task_id, flag)
                    feedback[logged.task_id] = flag
            tasks.append({"task_id": logged.task_id, "session_id": session_id,
                          "user_id": user_id})
            print(f"logged {n}", flush=True)
            if args.rate > 0:
                ahead = n / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    flushed = phospho.flush(timeout_s=120)
    stats = phospho.stats()
    phospho.shutdown()
    result = {
        "tasks": tasks,
        "feedback": feedback,
        "flushed": flushed,
        "stats": {k: v for k, v in vars(stats).items() if isinstance(v, int)},
    }
    print("result " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
