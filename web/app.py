"""The console's FastAPI application: pages, the REST API under ``/api/v1``, its OpenAPI document, CSS.

:func:`create_app` takes the settings, the database engine and the async Redis client (and, for
tests, a clock). Around every request: bodies over :data:`MAX_BODY` are refused (413) before they
are read; every answer has a strict Content-Security-Policy (everything from this origin, no
framing), ``nosniff``, ``Referrer-Policy: same-origin`` and ``Cache-Control: no-store``. A
:class:`~web.deps.Problem` becomes JSON ``{"error", "message"}`` under ``/api`` and a page (or a
redirect to the sign-in page) elsewhere. The interactive API pages are off: they load scripts
from a CDN; the OpenAPI document is at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import ServerSettings
from web import (  # the second factor and API tokens
    api,
    api_devices,
    api_faces,
    api_groups,
    api_policies,
    api_schedules,
    api_settings,
    api_tasks,
    api_users,
    dashboards,
    face_parts,
    pages,
    pages_devices,
    pages_faces,
    pages_groups,
    pages_policies,
    pages_schedules,
    pages_security,
    pages_settings,
    pages_tasks,
    pages_users,
    security_api,
)
from web.console import Console
from web.deps import Problem
from web.faces import GateFactory
from web.i18n import text
from web.sessions import Clock, system_clock
from web.signin import CodeNeeded

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024  # bytes of a request body (forms and JSON of this foundation are small)
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


class BodyLimit:
    """ASGI middleware: a request whose body is (or declares itself) over ``limit`` bytes gets 413."""

    def __init__(
        self, app: ASGIApp, limit: int, wider: Callable[[str, str], int | None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.wider = wider  # (method, path) -> the larger limit of that route (face uploads), or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (self.wider(scope["method"], scope["path"]) if self.wider else None) or self.limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, receive, send)
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > limit:  # answer now; the application sees the client go away
                    refused = True
                    await _too_large(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not refused:
                raise


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    """Pure: the headers every answer on ``path`` gets (the dashboards' own under their prefix)."""
    chosen = dict(SECURITY_HEADERS)
    if path.startswith(dashboards.PREFIX + "/"):
        chosen.update(dashboards.headers_for(path))  # BokehJS: inline scripts, eval
    return [(k.encode(), v.encode()) for k, v in chosen.items()]


class SecurityHeaders:
    """ASGI middleware: :func:`headers_for` on every HTTP answer, replacing headers of those names.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and memory streams, a cost every console request paid.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["path"])
        names = {name for name, _ in extra}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"error": "too_large", "message": text("too_large", "en")}, status_code=413)
    response.headers.update(SECURITY_HEADERS)
    await response(scope, receive, send)


def create_app(
    settings: ServerSettings,
    engine: Engine,
    redis: aioredis.Redis,
    *,
    clock: Clock = system_clock,
    face_gate: GateFactory | None = None,
) -> FastAPI:
    """The console application on ``engine`` and ``redis`` (owned by the caller, not closed here)."""
    app = FastAPI(
        title="Telework Supporter console API",
        version="1",
        openapi_url=f"{api.PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    console = Console(settings, engine, redis, clock)
    app.state.console = console
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(security_api.router)
    app.include_router(pages_security.router)
    app.add_exception_handler(CodeNeeded, pages_security.code_needed_answer)  # sign-in waits for a code
    app.include_router(api_users.router)
    app.include_router(api_groups.router)
    app.include_router(pages_users.router)
    app.include_router(pages_groups.router)
    app.include_router(api_devices.router)
    app.include_router(pages_devices.router)
    app.include_router(api_faces.router)
    app.include_router(pages_faces.router)
    app.include_router(api_schedules.router)
    app.include_router(pages_schedules.router)
    app.include_router(api_settings.router)
    app.include_router(pages_settings.router)
    app.include_router(api_tasks.router)
    app.include_router(pages_tasks.router)
    app.include_router(api_policies.router)
    app.include_router(pages_policies.router)
    face_parts.install(app, settings, face_gate)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    dashboards.mount(app, console)  # the Panel/Bokeh dashboards under /dashboards, behind the sign-in

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> Response:
        if request.url.path.startswith("/api/"):
            headers = {"retry-after": str(exc.facts["seconds"])} if "seconds" in exc.facts else None
            body = {"error": exc.code, "message": text(exc.code, "en", **exc.facts)}
            return JSONResponse(body, status_code=exc.status, headers=headers)
        return pages.problem_page(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_refusal(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own refusals (a body that does not parse, broken multipart, no such route):
        the API's error format under ``/api``, Starlette's answer elsewhere."""
        if not request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        body = {"error": code, "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "expected": e.get("msg", "")}
            for e in exc.errors()[:10]
        ]
        return JSONResponse(
            {"error": "invalid", "message": "the request does not match the API", "details": errors},
            status_code=422,
        )

    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        BodyLimit, limit=MAX_BODY, wider=lambda method, path: face_parts.upload_limit(method, path, settings)
    )
    return app
