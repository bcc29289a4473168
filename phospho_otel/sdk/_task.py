"""``task(...)``: a task that spans a block of code or a function call.

As a context manager (``with`` / ``async with``) it yields a ``TaskRun``; as a decorator
(``@task`` or ``@task(name=..., metadata=...)``) it wraps sync and async functions,
generators and async generators (streamed chunks are joined into the output). The task
span is the current span inside, so spans made there by any tracer are its children.
An exception marks the span as an error, is recorded as an ``exception`` event, and is
re-raised unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from phospho_otel.sdk import _client
from phospho_otel.sdk._context import Scope, check_id, current_scope, push_scope
from phospho_otel.sdk._fastpath import TaskSpan
from phospho_otel.sdk._serialize import flatten_metadata, to_text

__all__ = ["TaskRun", "task"]

F = TypeVar("F", bound=Callable[..., Any])


class TaskRun:
    """One running task: its ids, its span, and setters for what is known later."""

    __slots__ = ("_chunks", "_ended", "_token", "session_id", "span", "task_id", "user_id")

    def __init__(self, task_id: str, session_id: str | None, user_id: str | None,
                 span: Span) -> None:
        self.task_id = task_id
        self.session_id = session_id
        self.user_id = user_id
        self.span = span
        self._token: Token[Context] | None = None
        self._ended = False
        self._chunks: list[str] | None = None

    @property
    def trace_id(self) -> str:
        return trace.format_trace_id(self.span.get_span_context().trace_id)

    @property
    def span_id(self) -> str:
        return trace.format_span_id(self.span.get_span_context().span_id)

    def set_output(self, output: Any, raw_output: Any = None) -> None:
        """Record the task's output (text rule as in ``log()``)."""
        if output is None:
            raise ValueError("output must not be None")
        attributes = _client.output_attributes(output, raw_output)
        if isinstance(self.span, TaskSpan):
            self.span.set_own_attributes(attributes)
        else:
            self.span.set_attributes(attributes)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Add ``phospho.metadata.<k>`` attributes."""
        self.span.set_attributes(flatten_metadata(metadata))

    def _add_chunk(self, chunk: Any) -> None:
        if self._chunks is None:
            self._chunks = []
        self._chunks.append(chunk if isinstance(chunk, str) else to_text(chunk)[0])

    def _detach(self) -> None:
        """Leave the task's context (once)."""
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)

    def _finish(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        span = self.span
        try:
            if self._chunks is not None:
                span.set_attributes(_client.output_attributes("".join(self._chunks)))
            if exc is not None and not isinstance(exc, GeneratorExit):
                span.record_exception(exc, escaped=True)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            span.end()


class _TaskOptions:
    """The arguments of one ``task(...)`` call; each entry makes a ``TaskRun``."""

    def __init__(
        self,
        input: Any,
        *,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        task_id: str | None,
        session_id: str | None,
        user_id: str | None,
        raw_input: Any,
    ) -> None:
        # input may come later (from a decorated call's arguments)
        _client.check_task_args("-" if input is None else input, metadata, task_id, name)
        check_id("session_id", session_id)
        check_id("user_id", user_id)
        self.input = input
        self.name = name
        self.metadata = dict(metadata) if metadata else None
        self.task_id = task_id
        self.session_id = session_id
        self.user_id = user_id
        self.raw_input = raw_input

    def start(self, input: Any, name: str, raw_input: Any = None) -> TaskRun:
        task_id = self.task_id or _client.new_task_id()
        ctx = None
        scope: Scope | None
        if self.session_id is not None or self.user_id is not None:
            scope, ctx = push_scope(self.session_id, self.user_id, None, new_id=False)
        else:
            scope = current_scope()
        session_id = scope.session_id if scope else None
        user_id = scope.user_id if scope else None
        attributes = _client.task_attributes(
            input,
            raw_input=raw_input if raw_input is not None else self.raw_input,
            metadata=self.metadata,
            task_id=task_id,
            session_id=session_id,
            user_id=user_id,
        )
        client = _client.current_client()
        fast = client.fast if client is not None else None
        span: Span
        if fast is not None and fast.usable():
            span = fast.start(name, attributes, ctx)
        else:
            span = _client.tracer().start_span(
                name, context=ctx, kind=SpanKind.INTERNAL, attributes=attributes
            )
        _client.remember_task(task_id, span.get_span_context())
        run = TaskRun(task_id, session_id, user_id, span)
        run._token = otel_context.attach(trace.set_span_in_context(span, ctx))
        return run


class _TaskScope:
    """``task(...)`` with arguments: a context manager, or a decorator."""

    def __init__(self, options: _TaskOptions) -> None:
        self._options = options
        self._runs: list[TaskRun] = []

    # -- context manager -----------------------------------------------------------

    def __enter__(self) -> TaskRun:
        options = self._options
        if options.input is None:
            raise ValueError("task(...) used with `with` needs input=")
        run = options.start(options.input, options.name or _client.DEFAULT_TASK_NAME)
        self._runs.append(run)
        return run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run = self._runs.pop()
        try:
            run._finish(exc)
        finally:
            token, run._token = run._token, None
            if token is not None:
                otel_context.detach(token)

    async def __aenter__(self) -> TaskRun:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator -----------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        return cast(F, _decorate(fn, self._options))


def _call_input(signature: inspect.Signature | None, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    """A decorated call's input: its only argument, or a mapping of its arguments
    (defaults applied; ``self``/``cls`` left out)."""
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            for key in ("self", "cls"):
                arguments.pop(key, None)
            if len(arguments) == 1:
                return next(iter(arguments.values()))
            return arguments
        except TypeError:
            pass
    if len(args) == 1 and not kwargs:
        return args[0]
    return {"args": list(args), "kwargs": kwargs}


def _decorate(fn: Callable[..., Any], options: _TaskOptions) -> Callable[..., Any]:
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(qualname, str):
        qualname = qualname.replace("<locals>.", "")  # "outer.<locals>.f" -> "outer.f"
    name = options.name or qualname or _client.DEFAULT_TASK_NAME
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskRun:
        if options.input is not None:
            return options.start(options.input, name)
        return options.start(_call_input(signature, args, kwargs), name)

    def end(run: TaskRun, exc: BaseException | None) -> None:
        try:
            run._finish(exc)
        finally:
            run._detach()

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            run = begin(args, kwargs)
            ctx = otel_context.get_current()
            run._detach()
            run._chunks = []
            agen = fn(*args, **kwargs)
            error: BaseException | None = None
            try:
                while True:
                    token = otel_context.attach(ctx)
                    try:
                        chunk = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    run._add_chunk(chunk)
                    yield chunk
            except BaseException as exc:
                error = exc
                raise
            finally:
                await agen.aclose()
                end(run, error)

        return agen_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            run = begin(args, kwargs)
            ctx = otel_context.get_current()
            run._detach()
            run._chunks = []
            gen = fn(*args, **kwargs)
            error: BaseException | None = None
            try:
                while True:
                    token = otel_context.attach(ctx)
                    try:
                        chunk = next(gen)
                    except StopIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    run._add_chunk(chunk)
                    yield chunk
            except BaseException as exc:
                error = exc
                raise
            finally:
                gen.close()
                end(run, error)

        return gen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            run = begin(args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                end(run, exc)
                raise
            if result is not None:
                run.set_output(result)
            end(run, None)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = begin(args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            end(run, exc)
            raise
        if result is not None:
            run.set_output(result)
        end(run, None)
        return result

    return wrapper


@overload
def task(input: F, /) -> F:  # @task on a function
    ...


@overload
def task(
    input: Any = None,
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    raw_input: Any = None,
) -> _TaskScope:
    ...


def task(
    input: Any = None,
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    raw_input: Any = None,
) -> Any:
    """A task around a block (``with task(input=...) as t``) or a function (``@task``,
    ``@task(name=...)``).

    Args:
        input: the task's input (required with ``with``; for a decorated function the
            call's arguments by default: the only argument, or a mapping of them).
        name: span name; default ``"task"``, or the decorated function's qualified name.
        metadata: ``phospho.metadata.<k>`` attributes.
        task_id: kept exactly when given (with a decorator: the same id for every call).
        session_id / user_id: for this task and every span inside it; default to the
            enclosing ``session(...)`` scope's.
        raw_input: the raw input payload (JSON text).
    """
    if callable(input) and not isinstance(input, (str, bytes)) and inspect.isroutine(input) \
            and name is None and metadata is None and task_id is None \
            and session_id is None and user_id is None and raw_input is None:
        return _decorate(input, _TaskOptions(None, name=None, metadata=None, task_id=None,
                                             session_id=None, user_id=None, raw_input=None))
    return _TaskScope(_TaskOptions(input, name=name, metadata=metadata, task_id=task_id,
                                   session_id=session_id, user_id=user_id,
                                   raw_input=raw_input))
