"""The gateway's application: Redis, database and background tasks in a lifespan; uvicorn serving.

The session logic lives in :mod:`realtime.gateway`; this module wires it to Starlette
routes (WebSocket ``/v1/agent``, ``GET /healthz``, ``GET /readyz``) and runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from core.process import redis_url as required_redis_url
from core.settings import ServerSettings
from realtime.auth import Authenticator
from realtime.evidence_upload import EvidenceUploads, default_sink
from realtime.face_enrollment import FaceEnrollment
from realtime.gateway import Gateway, utcnow
from realtime.reaper import Reaper
from realtime.redis_client import server_redis
from realtime.revocation import RevocationCheck
from realtime.serving import GatewayServer, listen_socket, tls_factory
from realtime.templates_push import TemplatePusher, announce, database_builder
from realtime.tenant_tasks import TaskOffers
from storage.accounts import invalid_tokens, lookup_token
from storage.agent_settings_store import load_layers
from storage.db import check_schema, make_engine
from storage.face_intake import GateFactory
from storage.tasks import active_tasks

log = logging.getLogger(__name__)

REDIS_POOL_SIZE = 64  # sessions wait for a pooled connection instead of failing with "Too many connections"
READY_TIMEOUT_S = 2.0
TASKS_CACHE_S = 30.0  # a tenant's task list is read from the database at most this often (changes are pushed)
STALE_FACTOR = 2  # an online state not refreshed for this many heartbeat timeouts is reaped


def ws_max_size(max_frame_bytes: int) -> int:
    """The WebSocket library's message limit: well above ours, so the gateway answers oversize frames."""
    return max(4 * max_frame_bytes, max_frame_bytes + 1024 * 1024)


def redis_client(url: str) -> aioredis.Redis:
    """A client over a bounded pool (a burst of sessions queues for connections rather than
    erroring) that reconnects after a Redis restart (:mod:`realtime.redis_client`)."""
    return server_redis(url, max_connections=REDIS_POOL_SIZE)


def create_app(settings: ServerSettings, face_gate: GateFactory | None = None) -> Starlette:
    """The gateway application; Redis, database and listener are set up in its lifespan. ``face_gate``:
    the gate of enrollment images (``telework/face_gate.py``; None: they wait for one)."""
    redis_url = required_redis_url(settings, "the gateway", published=False)
    database_url = settings.database()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running_gateway(settings, redis_url, database_url, face_gate) as gateway:
            app.state.gateway = gateway
            yield

    async def agent_endpoint(websocket: WebSocket) -> None:
        await websocket.app.state.gateway.run_session(websocket)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        gateway: Gateway = request.app.state.gateway
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await gateway.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return JSONResponse(
                {"status": "unavailable", "error": f"redis: {type(exc).__name__}: {exc}"}, status_code=503
            )
        return JSONResponse({"status": "ready", "sessions": gateway.session_count()})

    routes = [
        WebSocketRoute("/v1/agent", agent_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


@asynccontextmanager
async def running_gateway(
    settings: ServerSettings, redis_url: str, database_url: str, face_gate: GateFactory | None = None
) -> AsyncIterator[Gateway]:
    """The gateway over its database and Redis, with its background tasks: each is a step on one
    exit stack, so everything stops in the reverse order of its start."""
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(log.info, "gateway stopped")
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        redis = redis_client(redis_url)
        stack.push_async_callback(redis.aclose)
        await asyncio.to_thread(check_schema, engine)
        gateway = build_gateway(settings, engine, redis, face_gate)
        # Stopped last: the writer drains what the sessions queued before the gateway stops.
        await stack.enter_async_context(background("redis-writer", gateway.writer.run(), gateway.writer.stop))
        await stack.enter_async_context(reaping(settings, redis))
        await stack.enter_async_context(revoking(settings, gateway, engine))
        watermarks_stop = asyncio.Event()
        await stack.enter_async_context(
            background("stored-watermarks", gateway.watermarks.run(watermarks_stop), watermarks_stop.set)
        )
        listener = gateway.settings_listener
        await stack.enter_async_context(background("settings-listener", listener.run(), listener.stop))
        if gateway.templates is not None:  # face templates pushed on change (realtime/templates_push.py)
            faces = gateway.templates
            await stack.enter_async_context(background("face-templates", faces.run(), faces.stop))
        log.info("gateway started", extra={"redis": _safe_url(redis_url)})
        yield gateway


def build_gateway(
    settings: ServerSettings, engine: Engine, redis: aioredis.Redis, face_gate: GateFactory | None = None
) -> Gateway:
    """The session logic with its token lookup, task offers and evidence uploads over ``engine``."""
    auth = Authenticator(partial(lookup_token, engine), settings.auth_cache_s)
    offers = TaskOffers(partial(active_tasks, engine), TASKS_CACHE_S)
    gateway = Gateway(settings, redis, auth, offers, partial(load_layers, engine))
    gateway.evidence = EvidenceUploads(settings, partial(default_sink, settings, engine))
    gateway.evidence.enrollment = FaceEnrollment(settings, engine, face_gate, partial(announce, redis))
    gateway.templates = TemplatePusher(redis, lambda: gateway.sessions, database_builder(settings, engine))
    return gateway


def reaping(settings: ServerSettings, redis: aioredis.Redis) -> contextlib.AbstractAsyncContextManager[None]:
    """The reaper of live states no heartbeat refreshed, as a background task."""
    stop = asyncio.Event()
    reaper = Reaper(redis, STALE_FACTOR * settings.heartbeat_timeout_s, settings.heartbeat_timeout_s)
    return background("live-reaper", reaper.run(stop, utcnow), stop.set)


def revoking(
    settings: ServerSettings, gateway: Gateway, engine: Engine
) -> contextlib.AbstractAsyncContextManager[None]:
    """The re-check of the open sessions' tokens (revoked ones closed 1008), as a background task."""
    stop = asyncio.Event()
    check = RevocationCheck(
        gateway.registry.all, gateway.auth, partial(invalid_tokens, engine), settings.revocation_check_s
    )
    return background("revocation-check", check.run(stop), stop.set)


@asynccontextmanager
async def background(
    name: str, work: Coroutine[Any, Any, object], stop: Callable[[], object] | None = None
) -> AsyncIterator[None]:
    """``work`` as a task named ``name``; on the way out ``stop()`` asks it to end (without
    ``stop`` it is cancelled), then it is awaited and a failure of it raised."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        if stop is None:
            task.cancel()
        else:
            stop()
        await asyncio.wait([task])
        if not task.cancelled():
            task.result()


def uvicorn_config(app: Starlette, settings: ServerSettings) -> uvicorn.Config:
    """How the gateway runs on uvicorn (shared by :func:`serve`, ``telework up`` and the tests)."""
    return uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        ws="websockets-sansio",
        ws_max_size=ws_max_size(settings.max_frame_bytes),
        ws_per_message_deflate=False,  # small JSON frames; deflate would cost CPU and memory per session
        lifespan="on",
        log_config=None,  # logging is configured by the CLI
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
        ssl_context_factory=tls_factory(settings),  # HTTPS/WSS with TELEWORK_TLS_CERT/_KEY
    )


def serve(settings: ServerSettings, face_gate: GateFactory | None = None) -> None:
    """Run the gateway until SIGINT/SIGTERM (uvicorn handles both and stops cleanly).

    The port is taken first (taken already: one line, exit code 2), then the application starts;
    a stop signal during start-up ends it within seconds (:mod:`realtime.serving`).
    """
    app = create_app(settings, face_gate)
    sock = listen_socket(settings.gateway_host, settings.gateway_port)
    server = GatewayServer(uvicorn_config(app, settings))
    # Long-lived objects (modules, models) are moved out of the collector's sight and young
    # generations are collected less often: fewer GC pauses in the tail of ack latency.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    with sock:
        server.run(sockets=[sock])
    if not server.started and not server.should_exit:
        raise RuntimeError(
            f"gateway did not start on {settings.gateway_host}:{settings.gateway_port}; see the log above"
        )


def _safe_url(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _creds = head.partition("://")
    return f"{scheme}://***@{tail}"
