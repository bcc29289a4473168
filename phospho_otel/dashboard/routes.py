"""The dashboard's routes: its pages (``dashboard.pages``), the login page, the forms that
give feedback, and its static files.

Routes::

    GET  /                               303 to /insights
    GET  /insights | /sessions | /users | /tasks       the tabs (query: the views' own)
    GET  /sessions/{id} | /users/{id} | /tasks/{id}    one item
    POST /tasks/{id}/feedback, /sessions/{id}/feedback  feedback from the page (form:
                                         flag, notes, csrf_token, next), source ``owner``
    GET  /login, POST /login, POST /logout             with a token (``dashboard.auth``)
    GET  /static/...                     the style sheet, the script and Chart.js

Feedback from a page goes the way the SDK's does: ``api.feedback.feedback_request`` makes
the same feedback span, which the server's ``Ingestor`` stores; every view shows it as
soon as it is durable (the analyzer then evaluates the task again, feedback first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qsl

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.api.feedback import MAX_NOTES_CHARS, feedback_request
from phospho_otel.api.views import ViewContext
from phospho_otel.dashboard.auth import (
    CSRF_COOKIE,
    LOGIN_COOKIE,
    LOGIN_MAX_AGE_S,
    CsrfGuard,
    LoginCookie,
    safe_next,
)
from phospho_otel.dashboard.pages import Dashboard
from phospho_otel.dashboard.rendering import render
from phospho_otel.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    UnsupportedMediaType,
)
from phospho_otel.semconv import FeedbackFlagValues, FeedbackSourceValues

__all__ = ["dashboard_routes"]

MAX_FORM_BYTES = 64 * 1024
"""A feedback or login form larger than this is refused (413)."""
LOGIN_FAILURE_DELAY_S = 0.5
"""A wrong token is answered after this pause, to slow guessing."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, at most ``MAX_FORM_BYTES``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"a form is at most {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def dashboard_routes(views: ViewContext, ingestor: Ingestor,
                     token: str | None) -> list[BaseRoute]:
    """Every dashboard route (see the module doc); ``token`` turns the login page on."""
    csrf = CsrfGuard(token)
    login = LoginCookie(token) if token else None
    dashboard = Dashboard(views, csrf, login=login is not None)
    static = StaticFiles(directory=Path(str(files("phospho_otel.dashboard") / "static")))

    def page(render_page: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return _secure(render_page(request))
        endpoint.__name__ = f"dashboard_{render_page.__name__}"
        return endpoint

    def error(request: Request, exc: ServerError) -> Response:
        return _secure(HTMLResponse(render(
            "error.html", tab="", title=f"Error {exc.status}", message=exc.message,
            login=login is not None, link=None, presets=[], csrf_token="", here="/"),
            status_code=exc.status))

    async def feedback(request: Request) -> Response:
        try:
            form = await _form(request)
            csrf.check(request, form)
            flag = form.get("flag", "")
            if flag not in {f.value for f in FeedbackFlagValues}:
                raise BadRequest(f"flag: must be success or failure, got {flag!r}")
            notes = form.get("notes", "").strip() or None
            if notes is not None and len(notes) > MAX_NOTES_CHARS:
                raise BadRequest(f"notes: at most {MAX_NOTES_CHARS} characters")
            task_id = request.path_params.get("task_id")
            session_id = request.path_params.get("session_id")
            export = await asyncio.to_thread(_feedback_request, views, task_id,
                                               session_id, flag, notes)
            await ingestor.ingest(export)
        except ServerError as exc:
            return error(request, exc)
        target = safe_next(form.get("next"))
        return RedirectResponse(target, status_code=303)

    async def login_page(request: Request) -> Response:
        if login is None:
            return RedirectResponse("/", status_code=303)
        return _login_form(request, csrf, request.query_params.get("next", "/"), None, 200)

    async def login_submit(request: Request) -> Response:
        if login is None:
            return RedirectResponse("/", status_code=303)
        try:
            form = await _form(request)
            csrf.check(request, form)
        except ServerError as exc:
            return error(request, exc)
        target = safe_next(form.get("next"))
        if not login.matches_token(form.get("token", "")):
            await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
            return _login_form(request, csrf, target, "That is not the server's token.", 401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(LOGIN_COOKIE, login.issue(), max_age=LOGIN_MAX_AGE_S,
                            httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        try:
            csrf.check(request, await _form(request))
        except ServerError as exc:
            return error(request, exc)
        response = RedirectResponse("/login" if login else "/", status_code=303)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def home(request: Request) -> Response:
        query = request.url.query
        return RedirectResponse("/insights" + ("?" + query if query else ""), status_code=303)

    return [
        Route("/", home, methods=["GET"]),
        Route("/insights", page(dashboard.insights), methods=["GET"]),
        Route("/sessions", page(dashboard.sessions), methods=["GET"]),
        Route("/sessions/{session_id:path}/feedback", feedback, methods=["POST"]),
        Route("/sessions/{session_id:path}", page(dashboard.session), methods=["GET"]),
        Route("/users", page(dashboard.users), methods=["GET"]),
        Route("/users/{user_id:path}", page(dashboard.user), methods=["GET"]),
        Route("/tasks", page(dashboard.tasks), methods=["GET"]),
        Route("/tasks/{task_id:path}/feedback", feedback, methods=["POST"]),
        Route("/tasks/{task_id:path}", page(dashboard.task), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", app=static, name="static"),
    ]


def _feedback_request(views: ViewContext, task_id: str | None, session_id: str | None,
                      flag: str, notes: str | None) -> ExportTraceServiceRequest:
    """The owner's feedback on a stored task or session (``NotFound`` if it is not)."""
    owner = FeedbackSourceValues.OWNER.value
    with views.store.read() as reader:
        if task_id is not None:
            row = reader.get_task(task_id)
            if row is None:
                raise NotFound(f"no task with id {task_id!r}")
            t = row.task
            return feedback_request(flag=flag, notes=notes, source=owner, task_id=task_id,
                                    session_id=t.session_id, user_id=t.user_id,
                                    task_span=(t.trace_id, t.span_id))
        session = reader.get_session(session_id) if session_id is not None else None
        if session is None:
            raise NotFound(f"no session with id {session_id!r}")
        return feedback_request(flag=flag, notes=notes, source=owner,
                                session_id=session.session_id, user_id=session.user_id)


def _login_form(request: Request, csrf: CsrfGuard, target: str, problem: str | None,
                status: int) -> Response:
    cookie = request.cookies.get(CSRF_COOKIE) or CsrfGuard.new_cookie()
    response = HTMLResponse(render(
        "login.html", tab="", title="Log in", next=safe_next(target), problem=problem,
        csrf_token=csrf.form_token(cookie), login=False, link=None, presets=[], here="/"),
        status_code=status)
    if CSRF_COOKIE not in request.cookies:
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/")
    return _secure(response)
