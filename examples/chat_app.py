"""Example LLM app: a customer-support chat bot instrumented with phospho-otel.

Simulates many users chatting with the bot (no real model is called): each chat is a
session of a few turns; each turn is a task (``phospho.task``) with the user's message
as input, the bot's answer as output, the raw chat messages and model metadata; a slow
model call sometimes fails (the task is marked as an error); some users give feedback
(``phospho.user_feedback``); a few users also run one-off tasks outside any chat.
Everything is decided by ``--seed``, so a run's figures are known in advance::

    python examples/chat_app.py --endpoint http://127.0.0.1:4318 --users 20 --sessions 60

prints a JSON summary (tasks, sessions, users, feedback) once every span is exported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import phospho_otel as phospho

TOPICS: dict[str, list[tuple[str, str]]] = {
    "password": [
        ("I can't log in to my account", "Sorry to hear that! Did you try resetting your "
         "password from the login page?"),
        ("The reset email never arrives", "Please check your spam folder; I have just sent "
         "a new link."),
        ("Got it, it works now", "Great! Anything else I can help with?"),
        ("No, thanks", "Have a nice day!"),
    ],
    "refund": [
        ("I want a refund for my last order", "I can help with that. What is the order "
         "number?"),
        ("It's order 4821", "Order 4821 is eligible for a refund within 30 days."),
        ("Please refund it to my card", "Done: the refund will reach your card in 3-5 days."),
        ("Why does it take so long?", "Card networks take a few days to settle refunds."),
    ],
    "shipping": [
        ("Where is my package?", "Your package left our warehouse yesterday."),
        ("When will it arrive?", "The carrier estimates delivery on Thursday."),
        ("Can I change the address?", "Yes, until it reaches the local depot. What is the "
         "new address?"),
        ("12 rue de la Paix, Paris", "Address updated."),
        ("Thanks!", "You're welcome!"),
    ],
    "pricing": [
        ("How much is the pro plan?", "The pro plan is $20 per user per month."),
        ("Is there a discount for a year?", "Yes: two months free with yearly billing."),
        ("Do you have a student plan?", "Students get the pro plan at half price."),
    ],
    "bug": [
        ("The export button does nothing", "Which browser are you using?"),
        ("Firefox 140", "Thanks, this is a known issue; a fix ships next week."),
        ("Is there a workaround?", "Yes: use the export command from the menu instead."),
        ("That menu item is greyed out", "Then please try Chrome until the fix ships."),
        ("OK", "Sorry for the trouble!"),
    ],
}
ONE_OFF = ["Summarize this contract in 3 bullet points", "Translate my invoice to German",
           "Classify this ticket: 'app crashes on start'"]
MODELS = ["gpt-4o-mini", "claude-haiku", "mistral-small"]
FIRST_NAMES = ["ada", "bob", "chen", "dana", "eli", "fatou", "gus", "hana", "ivan", "jade",
               "kofi", "lea", "mo", "nina", "omar", "pia", "quinn", "rui", "sara", "tom"]


@dataclass
class Turn:
    """One planned task: what the user says, what the bot answers, what happens."""

    input: str
    output: str
    fails: bool = False
    feedback: str | None = None
    notes: str | None = None


@dataclass
class Chat:
    """One planned session (or, with ``session_id=None``, a lone task)."""

    session_id: str | None
    user_id: str
    topic: str
    model: str
    turns: list[Turn] = field(default_factory=list)


def plan(users: int, sessions: int, seed: int) -> list[Chat]:
    """The workload: ``sessions`` chats spread over ``users`` users, plus a few lone tasks."""
    rng = random.Random(seed)
    user_ids = [f"user-{FIRST_NAMES[i % len(FIRST_NAMES)]}-{i:03d}" for i in range(users)]
    chats: list[Chat] = []
    for i in range(sessions):
        topic = rng.choice(sorted(TOPICS))
        script = TOPICS[topic]
        chat = Chat(f"chat-{seed}-{i:04d}", user_ids[rng.randrange(users) if i >= users else i],
                    topic, rng.choice(MODELS))
        for question, answer in script[: rng.randint(1, len(script))]:
            turn = Turn(question, answer, fails=rng.random() < 0.04)
            if not turn.fails and rng.random() < 0.25:
                turn.feedback = "success" if rng.random() < 0.7 else "failure"
                if turn.feedback == "failure":
                    turn.notes = rng.choice(["wrong answer", "too slow", "not helpful"])
            chat.turns.append(turn)
        chats.append(chat)
    for user_id in user_ids[:: max(1, users // 4)]:
        chats.append(Chat(None, user_id, "one-off", rng.choice(MODELS),
                          [Turn(rng.choice(ONE_OFF), "Here you go.")]))
    return chats


class ModelTimeout(Exception):
    """The simulated model call took too long."""


def _chat(chat: Chat, latency_s: float, seed: int) -> None:
    rng = random.Random(f"{seed}/{chat.session_id}/{chat.user_id}")
    messages: list[dict[str, str]] = [{"role": "system", "content": f"Support bot ({chat.topic})"}]
    scope = (phospho.session(chat.session_id, user_id=chat.user_id) if chat.session_id
             else contextlib.nullcontext())  # a lone task belongs to no session
    with scope:
        for k, turn in enumerate(chat.turns):
            messages.append({"role": "user", "content": turn.input})
            task_id = f"{chat.session_id or chat.user_id + '-lone'}-t{k + 1}"
            try:
                with phospho.task(
                    input=turn.input, task_id=task_id, user_id=chat.user_id,
                    raw_input=json.dumps({"model": chat.model, "messages": messages}),
                    metadata={"model": chat.model, "topic": chat.topic, "temperature": 0.2},
                ) as t:
                    time.sleep(latency_s * rng.uniform(0.5, 1.5))  # the "model call"
                    if turn.fails:
                        raise ModelTimeout(f"{chat.model} did not answer in time")
                    t.set_output(turn.output)
                    t.set_metadata({"prompt_tokens": 20 * len(messages),
                                    "completion_tokens": len(turn.output.split())})
            except ModelTimeout:
                messages.append({"role": "assistant", "content": "(error)"})
                continue
            messages.append({"role": "assistant", "content": turn.output})
            if turn.feedback:
                phospho.user_feedback(task_id, turn.feedback, notes=turn.notes, source="user")
            time.sleep(latency_s * rng.uniform(0, 2))  # the user reads and types


def summary(chats: list[Chat]) -> dict[str, int]:
    """The figures the aggregator must show once the workload is in."""
    in_sessions = [c for c in chats if c.session_id]
    return {
        "tasks": sum(len(c.turns) for c in chats),
        "sessions": len(in_sessions),
        "users": len({c.user_id for c in chats}),
        "feedback": sum(t.feedback is not None for c in chats for t in c.turns),
        "feedback_in_sessions": sum(t.feedback is not None for c in in_sessions
                                    for t in c.turns),
        "errors": sum(t.fails for c in chats for t in c.turns),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=None,
                        help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument("--protocol", default=None, choices=["http/protobuf", "grpc"])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=10.0,
                        help="simulated model latency per turn")
    parser.add_argument("--concurrency", type=int, default=8, help="chats at once")
    args = parser.parse_args(argv)
    chats = plan(args.users, args.sessions, args.seed)
    phospho.init(endpoint=args.endpoint, protocol=args.protocol, service_name="chat-app")
    with ThreadPoolExecutor(args.concurrency) as pool:
        for future in [pool.submit(_chat, c, args.latency_ms / 1000, args.seed) for c in chats]:
            future.result()
    flushed = phospho.flush(30)
    phospho.shutdown()
    print(json.dumps(summary(chats)))
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
