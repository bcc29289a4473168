"""A local OpenAI-compatible model server for the interop tests: ``POST
/v1/chat/completions``, plain or streamed (SSE, with a final usage chunk when the client
asks ``stream_options.include_usage``), always with token usage.

The reply is a pure function of the last user message (``reply_to``), so a test knows the
assistant's words of every turn; usage is ``prompt_tokens`` = the number of words in all
the messages, ``completion_tokens`` = the number of words in the reply."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import serve_asgi

__all__ = ["MODEL", "fake_openai", "reply_to"]

MODEL = "fake-gpt"


def reply_to(user_text: str) -> str:
    """The assistant's reply to a user message."""
    return f"Sure! You said: {user_text}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _usage(messages: list[dict[str, Any]], reply: str) -> dict[str, int]:
    prompt = sum(len(_text(m.get("content")).split()) for m in messages)
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


async def _chat_completions(request: Request) -> Response:
    try:
        body = await request.json()
        messages = body["messages"]
        last_user = next(_text(m.get("content")) for m in reversed(messages)
                         if m.get("role") == "user")
    except (ValueError, KeyError, TypeError, StopIteration):
        return JSONResponse({"error": {"message": "need messages with a user message"}},
                            status_code=400)
    reply = reply_to(last_user)
    usage = _usage(messages, reply)
    model = body.get("model", MODEL)
    created = int(time.time())
    if not body.get("stream"):
        return JSONResponse({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
            "usage": usage,
        })
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events() -> AsyncIterator[bytes]:
        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            doc = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                   "created": created, "model": model, "choices": choices, "usage": usage}
            return f"data: {json.dumps(doc)}\n\n".encode()

        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None}])
        words = reply.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if include_usage:
            yield chunk([], usage)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@contextmanager
def fake_openai() -> Iterator[str]:
    """Serve the fake on a free 127.0.0.1 port; yields its base URL (``.../v1``)."""
    app = Starlette(routes=[Route("/v1/chat/completions", _chat_completions,
                                  methods=["POST"])])
    with serve_asgi(app) as port:
        yield f"http://127.0.0.1:{port}/v1"
