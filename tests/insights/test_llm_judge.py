"""The LLM judge and its OpenAI-compatible client (``phospho_otel.insights.llm``) against a
real local HTTP server (``tests/support/fake_llm``) that checks the app's system prompt is
in the prompt and the bearer key is right: the prompt, parsing, retries, timeouts, bounded
concurrency, and an endpoint that is down."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from phospho_otel.insights.config import LLMSettings
from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.evaluation import EvaluationPipeline
from phospho_otel.insights.llm import (
    JUDGE_SOURCE,
    LLMClient,
    LLMJudge,
    LLMRejected,
    LLMUnavailable,
)
from phospho_otel.model.analysis import Evaluation
from phospho_otel.model.records import TaskRecord
from tests.support.fake_llm import FakeLLM, fake_llm

SYSTEM_PROMPT = "You are Bob, the support assistant of Acme Bank. Never give investment advice."
KEY_ENV = "PHOSPHO_TEST_JUDGE_KEY"


def task(n: int, input: str, output: str | None, status: str = "ok") -> TaskRecord:
    return TaskRecord(
        task_id=f"t{n}", trace_id=bytes(16), span_id=n.to_bytes(8, "big"), session_id="s1",
        user_id="u1", name="chat", service_name="bank-bot", convention="phospho",
        input=input, output=output, raw_input=None, raw_output=None,
        metadata=json.dumps({"system_prompt": SYSTEM_PROMPT}), start_ns=n, end_ns=n + 1,
        status=status)


def context(system_prompt: str | None = SYSTEM_PROMPT) -> TaskContext:
    earlier = task(1, "Hi, I lost my card", "I can block it for you. Shall I?")
    current = task(2, "Yes please, and order a new one",
                   "Done: card ending 1234 is blocked and a new one is on its way.")
    following = task(3, "Great, thanks a lot!", "You're welcome.")
    return TaskContext(task=current, previous=(earlier,), next=following,
                       system_prompt=system_prompt, position=2)


def settings(url: str, **overrides: object) -> LLMSettings:
    values: dict[str, object] = {"url": url, "model": "judge-1", "api_key_env": KEY_ENV,
                                 "timeout_s": 5.0, "max_concurrency": 4, "max_retries": 2}
    values.update(overrides)
    return LLMSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    with fake_llm(system_prompt=SYSTEM_PROMPT, api_key="sk-test-123") as f:
        yield f


def client_for(fake: FakeLLM, **overrides: object) -> LLMClient:
    return LLMClient(settings(fake.url, **overrides), backoff_s=0.01)


# --- the prompt and the verdict --------------------------------------------------------

def test_the_judge_sends_the_system_prompt_and_the_session_context(fake: FakeLLM) -> None:
    with client_for(fake) as client:
        verdicts = LLMJudge(client).judge_many([context()])
    assert verdicts == [Evaluation("success", 0.9, JUDGE_SOURCE, "the answer does the job")]
    [request] = fake.requests
    assert request.authorization == "Bearer sk-test-123"
    assert request.body["model"] == "judge-1"
    assert request.body["temperature"] == 0
    assert [m["role"] for m in request.body["messages"]] == ["system", "user"]
    assert '"label"' in request.system and "JSON" in request.system
    prompt = request.user
    for text in (SYSTEM_PROMPT, "Hi, I lost my card", "I can block it for you",
                 "Yes please, and order a new one", "card ending 1234 is blocked",
                 "Great, thanks a lot!"):
        assert text in prompt, text
    # the turn to evaluate is marked, the earlier one numbered
    assert prompt.index("<turn number=\"1\">") < prompt.index("<turn_to_evaluate>")


def test_without_the_system_prompt_the_fake_refuses_and_the_judge_has_no_verdict(
        fake: FakeLLM) -> None:
    with client_for(fake) as client:
        judge = LLMJudge(client)
        assert judge.judge_many([context(system_prompt=None)]) == [None]
        with pytest.raises(LLMRejected) as caught:
            client.complete(*judge.messages(context(system_prompt=None)))
    assert caught.value.status_code == 400
    assert "400" in str(caught.value) and "system prompt is not in the prompt" in str(caught.value)
    assert len(fake.requests) == 2  # a rejection is not retried


def test_the_verdict_of_the_endpoint_is_parsed(fake: FakeLLM) -> None:
    fake.reply = lambda system, user: (
        '```json\n{"label": "failure", "score": 0.1, "reason": "it gave investment '
        'advice"}\n```' if "stocks" in user else '{"label": "success", "score": 0.7}')
    advice = TaskContext(task=task(5, "Which stocks should I buy?", "Buy ACME, it will soar."),
                         system_prompt=SYSTEM_PROMPT)
    with client_for(fake) as client:
        verdicts = LLMJudge(client).judge_many([advice, context()])
    assert verdicts == [
        Evaluation("failure", 0.1, JUDGE_SOURCE, "it gave investment advice"),
        Evaluation("success", 0.7, JUDGE_SOURCE, "the judge gave no reason"),
    ]


def test_the_judge_is_an_evaluator_and_feeds_the_pipeline(fake: FakeLLM) -> None:
    fake.reply = lambda system, user: '{"label": "failure", "score": 0.2, "reason": "wrong"}'
    with client_for(fake) as client:
        judged = LLMJudge(client).evaluate(context())
    assert judged == Evaluation("failure", 0.2, JUDGE_SOURCE, "wrong")
    # the heuristics alone say success (the user thanked); the judge's verdict stands
    assert EvaluationPipeline().evaluate(context()).label == "success"
    assert EvaluationPipeline().evaluate(context(), judged) == judged


@pytest.mark.parametrize(("answer", "expected"), [
    ('{"label": "success", "score": 0.9, "reason": "ok"}', ("success", 0.9, "ok")),
    ('Sure! Here it is: {"label": "failure", "score": 0.05, "reason": "refused"} Hope it '
     'helps.', ("failure", 0.05, "refused")),
    ('```\n{"label": "Failure", "score": 0.9, "reason": "sure it failed"}\n```',
     ("failure", 0.1, "sure it failed")),  # confidence in the label: turned round
    ('{"label": "success", "score": 0.2, "reason": "x"}', ("success", 0.8, "x")),
    ('{"label": "unknown", "score": 0.9, "reason": "cannot tell"}',
     ("unknown", 0.5, "cannot tell")),
    ('{"label": "pass", "score": 3, "reason": "fine"}', ("success", 1.0, "fine")),
    ('{"label": "failure"}', ("failure", 0.2, "the judge gave no reason")),
    ('{"label": "maybe", "score": 0.5}', ("unknown", 0.5, "judge answer not understood")),
    ("I think it went well.", ("unknown", 0.5, "judge answer not understood")),
    ('["success"]', ("unknown", 0.5, "judge answer not understood")),
    ('{"score": 0.9}', ("unknown", 0.5, "judge answer not understood")),
    ("", ("unknown", 0.5, "judge answer not understood")),
])
def test_parse(answer: str, expected: tuple[str, float, str]) -> None:
    judge = LLMJudge(LLMClient(settings("http://127.0.0.1:9")))
    try:
        result = judge.parse(answer)
    finally:
        judge.client.close()
    assert (result.label, result.score, result.reason) == expected
    assert result.source == JUDGE_SOURCE


def test_prompt_parts_are_cut_to_bounded_lengths() -> None:
    huge = "x" * 100_000
    ctx = TaskContext(task=task(9, huge, huge), previous=tuple(task(i, huge, huge)
                                                               for i in range(20)),
                      next=task(99, huge, None), system_prompt=huge, position=21)
    client = LLMClient(settings("http://127.0.0.1:9"))
    try:
        _system, user = LLMJudge(client).messages(ctx)
    finally:
        client.close()
    assert len(user) < 30_000
    assert user.count("<turn number=") == 5  # the last few earlier turns only
    assert '<turn number="16">' in user


# --- the key ---------------------------------------------------------------------------

def test_a_wrong_key_is_rejected_at_once(fake: FakeLLM,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with client_for(fake) as client, pytest.raises(LLMRejected) as caught:
        client.complete("s", SYSTEM_PROMPT)
    assert caught.value.status_code == 401
    assert "401" in str(caught.value) and KEY_ENV in str(caught.value)
    assert len(fake.requests) == 1
    assert fake.requests[0].authorization == "Bearer sk-wrong"


def test_no_key_is_sent_without_a_key_variable(fake: FakeLLM) -> None:
    fake.api_key = None
    with client_for(fake, api_key_env=None) as client:
        assert "success" in client.complete("s", SYSTEM_PROMPT)
    assert fake.requests[0].authorization is None


# --- retries and timeouts --------------------------------------------------------------

def test_5xx_and_429_are_retried(fake: FakeLLM) -> None:
    fake.fail_next(1, 503)
    fake.fail_next(1, 429, retry_after="0")
    with client_for(fake, max_retries=2) as client:
        assert "success" in client.complete("s", SYSTEM_PROMPT)
    assert len(fake.requests) == 3


def test_unavailable_after_the_retries(fake: FakeLLM) -> None:
    fake.fail_next(3, 502)
    with client_for(fake, max_retries=2) as client:
        with pytest.raises(LLMUnavailable) as caught:
            client.complete("s", SYSTEM_PROMPT)
        assert not isinstance(caught.value, LLMRejected)
        assert "3 attempts" in str(caught.value) and "502" in str(caught.value)
        assert len(fake.requests) == 3
        # the endpoint is back: the next call succeeds
        assert "success" in client.complete("s", SYSTEM_PROMPT)


def test_a_hung_endpoint_times_out_and_is_retried(fake: FakeLLM) -> None:
    fake.hang_next(1)
    with client_for(fake, timeout_s=0.3, max_retries=1) as client:
        start = time.monotonic()
        assert "success" in client.complete("s", SYSTEM_PROMPT)
        assert time.monotonic() - start >= 0.3
        fake.hang_next(2)
        start = time.monotonic()
        with pytest.raises(LLMUnavailable, match=r"no answer within 0\.3 s"):
            client.complete("s", SYSTEM_PROMPT)
        assert time.monotonic() - start < 3
    assert len(fake.requests) == 4


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_down_endpoint_gives_no_verdicts() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with LLMClient(settings(url, max_retries=1), backoff_s=0.01) as client:
        with pytest.raises(LLMUnavailable, match="cannot reach it"):
            client.complete("s", "u")
        assert LLMJudge(client).judge_many([context(), context()]) == [None, None]


def test_failures_keep_their_places(fake: FakeLLM) -> None:
    fake.reply = lambda system, user: user.split()[0]
    fake.fail_next(1, 500)
    with client_for(fake, max_retries=0, max_concurrency=1) as client:
        answers = client.complete_many([("s", f"{i} {SYSTEM_PROMPT}") for i in range(3)])
    assert isinstance(answers[0], LLMUnavailable)
    assert answers[1:] == ["1", "2"]


# --- concurrency -----------------------------------------------------------------------

def test_concurrency_is_bounded_and_order_kept(fake: FakeLLM) -> None:
    fake.delay_s = 0.15
    fake.reply = lambda system, user: user.split()[0]
    requests = [("s", f"{i} {SYSTEM_PROMPT}") for i in range(12)]
    with client_for(fake, max_concurrency=3) as client:
        start = time.monotonic()
        answers = client.complete_many(requests)
        elapsed = time.monotonic() - start
    assert answers == [str(i) for i in range(12)]
    assert fake.max_in_flight == 3
    assert elapsed >= 4 * 0.15  # 12 calls, 3 at a time


def test_the_bound_holds_across_threads(fake: FakeLLM) -> None:
    import threading

    fake.delay_s = 0.1
    with client_for(fake, max_concurrency=2) as client:
        threads = [threading.Thread(target=client.complete_many,
                                    args=([("s", SYSTEM_PROMPT)] * 4,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(fake.requests) == 12
    assert fake.max_in_flight == 2
