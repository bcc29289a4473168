"""The LLM judge: an optional evaluator asking any OpenAI-compatible chat-completions
endpoint whether a task did what its user wanted.

``LLMClient`` is the endpoint (``LLMSettings``: URL, model, the name of the environment
variable holding the API key, timeout, retries, concurrency); it is synchronous, meant for
the analyzer's thread. One call, ``complete(system, user)``, POSTs
``{url}/chat/completions`` with ``temperature`` 0 and returns the answer's text:

- connection errors, timeouts, 408, 429 and 5xx answers are retried ``max_retries`` times with
  a short exponential backoff (a ``Retry-After`` of a 429 or 503 is honoured up to 5 s),
  then ``LLMUnavailable`` is raised: the endpoint is away, try again later;
- any other 4xx (a wrong key, an unknown model, a bad URL) is a misconfiguration a retry
  cannot fix: ``LLMRejected`` (a subclass of ``LLMUnavailable``) is raised at once, with
  the status and the head of the body;
- ``complete_many`` runs calls ``max_concurrency`` at a time (a thread pool), in order,
  an ``LLMUnavailable`` in the place of each call that failed; the bound holds across
  threads (every attempt holds a slot of one semaphore).

``LLMJudge`` builds the prompt (``messages``): the judge's instructions as the system
message, and as the user message the app's **system prompt** (``metadata.system_prompt``),
the earlier turns of the session, the task's input and output, and what the user said
next; each part is cut to a bounded length. It asks for one JSON object ``{"label",
"score", "reason"}`` and ``parse`` reads it (source ``llm_judge``); ``judge_many`` gives
None for a task whose call failed, so that the analyzer keeps the heuristic verdict and
asks again later (``LLMSettings.retry_later_s``).

Nothing here runs unless ``InsightsConfig.judge`` is set: the analyzer builds the client
only then.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from phospho_otel.insights.config import LLMSettings
from phospho_otel.insights.context import TaskContext
from phospho_otel.model.analysis import EVALUATION_LABELS, Evaluation

__all__ = ["JUDGE_SOURCE", "LLMClient", "LLMJudge", "LLMRejected", "LLMUnavailable"]

JUDGE_SOURCE = "llm_judge"
"""``Evaluation.source`` of the judge's verdicts."""

_BODY_HEAD = 300
_MAX_RETRY_AFTER_S = 5.0
_MAX_BACKOFF_S = 2.0


class LLMUnavailable(Exception):
    """The endpoint could not answer (refused, timed out, 429, 5xx) after the retries;
    try again later."""


class LLMRejected(LLMUnavailable):
    """The endpoint refused the request with a 4xx other than 408 and 429 (a wrong key,
    model or URL): a retry cannot help until the configuration changes."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def _content(body: Any) -> str:
    """The text of the first choice of a chat-completions answer."""
    content = body["choices"][0]["message"]["content"]
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise TypeError("content is not text")
    return content


class LLMClient:
    """A synchronous OpenAI-compatible chat-completions client with retries, timeouts and
    bounded concurrency (see the module doc). The API key is read from
    ``os.environ[settings.api_key_env]`` when the client is made."""

    def __init__(self, settings: LLMSettings, *, transport: httpx.BaseTransport | None = None,
                 backoff_s: float = 0.25) -> None:
        self.settings = settings
        self.backoff_s = backoff_s
        """First pause between attempts; doubled each retry, at most 2 s."""
        headers = {"content-type": "application/json"}
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._url = settings.url.rstrip("/") + "/chat/completions"
        self._http = httpx.Client(headers=headers, timeout=settings.timeout_s,
                                  transport=transport)
        concurrency = max(1, settings.max_concurrency)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix="phospho-llm")

    def complete(self, system: str, user: str) -> str:
        """The model's answer to a system and a user message. Raises ``LLMUnavailable``
        (the endpoint is away) or ``LLMRejected`` (it refuses the request)."""
        body = {"model": self.settings.model, "temperature": 0,
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": user}]}
        attempts = max(0, self.settings.max_retries) + 1
        problem = ""
        for attempt in range(attempts):
            pause: float | None = None
            try:
                with self._slots:
                    response = self._http.post(self._url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self.settings.timeout_s:g} s"
            except httpx.TransportError as exc:
                problem = f"cannot reach it ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status < 300:
                    try:
                        return _content(response.json())
                    except (ValueError, KeyError, IndexError, TypeError):
                        problem = f"HTTP {status} with a body that is not a chat completion: " \
                                  f"{response.text[:_BODY_HEAD]!r}"
                elif status in (408, 429) or status >= 500:
                    problem = f"HTTP {status}: {response.text[:_BODY_HEAD]!r}"
                    pause = _retry_after(response)
                else:
                    raise LLMRejected(
                        f"LLM endpoint {self._url} rejected the request: HTTP {status}: "
                        f"{response.text[:_BODY_HEAD]!r} (check its URL, model and API key "
                        f"in ${self.settings.api_key_env})", status)
            if attempt + 1 < attempts:
                backoff = min(self.backoff_s * 2 ** attempt, _MAX_BACKOFF_S)
                time.sleep(backoff if pause is None else min(pause, _MAX_RETRY_AFTER_S))
        raise LLMUnavailable(f"LLM endpoint {self._url} unavailable after {attempts} "
                             f"attempt{'s' if attempts != 1 else ''}: {problem}")

    def complete_many(self, requests: Sequence[tuple[str, str]]
                      ) -> list[str | LLMUnavailable]:
        """``complete`` of each (system, user) pair, ``max_concurrency`` at a time, in
        order; an ``LLMUnavailable`` (or ``LLMRejected``) in the place of each failure."""
        def one(request: tuple[str, str]) -> str | LLMUnavailable:
            try:
                return self.complete(*request)
            except LLMUnavailable as exc:
                return exc

        if len(requests) <= 1:
            return [one(r) for r in requests]
        return list(self._pool.map(one, requests))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the judge -------------------------------------------------------------------------

JUDGE_INSTRUCTIONS = """\
You evaluate one turn of a conversation between a user and an AI assistant: did the \
assistant's answer do what the user wanted, within what the assistant was instructed to do?

Judge the answer of the turn to evaluate only. The assistant's instructions (its system \
prompt) say what it is for: a refusal that its instructions require is a success; an \
apology, a refusal or an evasion that leaves the user's request unanswered when it could \
have been answered is a failure; an answer that is wrong, off-topic or ignores the \
instructions is a failure. What the user said next is strong evidence: thanks or moving on \
suggest success; a complaint, or asking the same thing again, suggests failure. If you \
cannot tell, say unknown.

Answer with one JSON object and nothing else:
{"label": "success" | "failure" | "unknown", "score": <number from 0 to 1: how likely the \
turn is a success>, "reason": "<one short sentence>"}"""

_SYSTEM_PROMPT_CHARS = 4000
_TURN_CHARS = 4000
_CONTEXT_CHARS = 1000
_CONTEXT_TURNS = 5
_REASON_CHARS = 500


def _cut(text: str | None, limit: int) -> str:
    if text is None:
        return "(none)"
    text = text.strip()
    if not text:
        return "(empty)"
    return text if len(text) <= limit else text[:limit] + " [...cut]"


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_LABEL_WORDS = {"success": "success", "successful": "success", "pass": "success",
                "passed": "success", "yes": "success", "failure": "failure",
                "failed": "failure", "fail": "failure", "no": "failure",
                "unknown": "unknown", "unsure": "unknown", "uncertain": "unknown"}


class LLMJudge:
    """Asks an ``LLMClient`` to evaluate tasks (see the module doc). Also an
    ``evaluation.Evaluator`` (``evaluate`` makes one call; None when it failed)."""

    name = "llm_judge"

    def __init__(self, client: LLMClient) -> None:
        self.client = client

    def messages(self, ctx: TaskContext) -> tuple[str, str]:
        """The (system, user) messages asking about ``ctx``'s task."""
        parts = []
        if ctx.system_prompt:
            parts.append("The assistant's instructions (its system prompt):\n<system_prompt>\n"
                         f"{_cut(ctx.system_prompt, _SYSTEM_PROMPT_CHARS)}\n</system_prompt>")
        else:
            parts.append("The assistant's instructions (its system prompt): not known.")
        earlier = list(ctx.previous)[-_CONTEXT_TURNS:]
        if earlier:
            first = (ctx.position or len(ctx.previous) + 1) - len(earlier)
            turns = [f"<turn number=\"{first + i}\">\nUser: {_cut(t.input, _CONTEXT_CHARS)}\n"
                     f"Assistant: {_cut(t.output, _CONTEXT_CHARS)}\n</turn>"
                     for i, t in enumerate(earlier)]
            parts.append("Earlier turns of the conversation, oldest first:\n" + "\n".join(turns))
        task = ctx.task
        status = "\n(The assistant's call ended with an error.)" if task.status == "error" else ""
        parts.append("The turn to evaluate:\n<turn_to_evaluate>\n"
                     f"User: {_cut(task.input, _TURN_CHARS)}\n"
                     f"Assistant: {_cut(task.output, _TURN_CHARS)}{status}\n"
                     "</turn_to_evaluate>")
        if ctx.next is not None:
            parts.append("What the user said next:\n<next_user_message>\n"
                         f"{_cut(ctx.next.input, _CONTEXT_CHARS)}\n</next_user_message>")
        else:
            parts.append("The user has said nothing after this turn (yet).")
        parts.append('Answer with the JSON object only: {"label": ..., "score": ..., '
                     '"reason": ...}')
        return JUDGE_INSTRUCTIONS, "\n\n".join(parts)

    def parse(self, text: str) -> Evaluation:
        """The judge's answer as an ``Evaluation``; ``unknown`` with the reason "judge
        answer not understood" when it is not the JSON asked for. A score that contradicts
        the label (a failure at 0.9: the judge's confidence in its label) is turned round;
        an ``unknown`` is always 0.5."""
        doc = _json_object(text)
        label = doc.get("label") if doc is not None else None
        label = _LABEL_WORDS.get(label.strip().lower()) if isinstance(label, str) else None
        if doc is None or label not in EVALUATION_LABELS:
            return Evaluation("unknown", 0.5, JUDGE_SOURCE, "judge answer not understood")
        reason = doc.get("reason")
        reason = reason.strip()[:_REASON_CHARS] if isinstance(reason, str) and \
            reason.strip() else "the judge gave no reason"
        raw = doc.get("score")
        score = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            and raw == raw else None
        if label == "unknown":
            score = 0.5
        elif score is None:
            score = 0.8 if label == "success" else 0.2
        else:
            score = min(1.0, max(0.0, score))
            if (label == "success") != (score >= 0.5):
                score = 1.0 - score
        return Evaluation(label, round(score, 4), JUDGE_SOURCE, reason)

    def judge_many(self, ctxs: Sequence[TaskContext]) -> list[Evaluation | None]:
        """Verdicts on ``ctxs``, in order; None where the endpoint did not answer."""
        answers = self.client.complete_many([self.messages(c) for c in ctxs])
        return [None if isinstance(a, LLMUnavailable) else self.parse(a) for a in answers]

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        return self.judge_many([ctx])[0]


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text``: bare, in a code fence, or among other words."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    found = _OBJECT.search(text)
    if found:
        candidates.append(found.group(0))
    for candidate in candidates:
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None
