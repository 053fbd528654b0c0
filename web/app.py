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
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import ServerSettings
from web import api, pages
from web.console import Console
from web.deps import Problem
from web.i18n import text
from web.sessions import Clock, system_clock

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

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(scope, receive, send)
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.limit:  # answer now; the application sees the client go away
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


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"error": "too_large", "message": text("too_large", "en")}, status_code=413)
    response.headers.update(SECURITY_HEADERS)
    await response(scope, receive, send)


def create_app(
    settings: ServerSettings, engine: Engine, redis: aioredis.Redis, *, clock: Clock = system_clock
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
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> Response:
        if request.url.path.startswith("/api/"):
            headers = {"retry-after": str(exc.facts["seconds"])} if "seconds" in exc.facts else None
            body = {"error": exc.code, "message": text(exc.code, "en", **exc.facts)}
            return JSONResponse(body, status_code=exc.status, headers=headers)
        return pages.problem_page(request, exc)

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

    app.add_middleware(BodyLimit, limit=MAX_BODY)
    return app
