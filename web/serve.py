"""The ``telework web`` process: the console on uvicorn at ``TELEWORK_WEB_HOST``:``TELEWORK_WEB_PORT``.

The port is taken first (taken: one line, exit code 2), the database must be at the schema this
code needs, and Redis is the one the settings name (or the one a running ``telework up``
published). uvicorn's access log is off and forwarded headers are not trusted: a client address
is the peer's (the sign-in limits count it). With ``TELEWORK_TLS_CERT`` and ``TELEWORK_TLS_KEY`` it
serves HTTPS (:func:`realtime.serving.tls_factory`), and the session cookie is ``__Host-`` and Secure.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import redis.asyncio as aioredis
import uvicorn
from sqlalchemy.engine import Engine

from core.process import redis_url
from core.settings import ServerSettings
from realtime.redis_client import server_redis
from realtime.serving import GatewayServer, ListenFailed, listen_socket, scheme, tls_factory
from storage.db import open_database
from web.app import create_app
from web.dashboards import close_mounted
from web.faces import GateFactory

log = logging.getLogger(__name__)


def bind(settings: ServerSettings) -> socket.socket:
    """The console's listening socket; ListenFailed naming the address and the settings to change."""
    try:
        return listen_socket(settings.web_host, settings.web_port)
    except ListenFailed as exc:
        reason = str(exc).split(" (set another", 1)[0]
        raise ListenFailed(
            f"{reason} (set another address with --host/--port or TELEWORK_WEB_HOST/TELEWORK_WEB_PORT)"
        ) from None


def server(
    settings: ServerSettings, engine: Engine, redis: aioredis.Redis, face_gate: GateFactory | None = None
) -> GatewayServer:
    """uvicorn serving the console (a stop signal during start-up ends it, as for the gateway)."""
    config = uvicorn.Config(
        create_app(settings, engine, redis, face_gate=face_gate),
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        ssl_context_factory=tls_factory(settings),  # HTTPS with TELEWORK_TLS_CERT/_KEY
    )
    return GatewayServer(config)


async def run(settings: ServerSettings, sock: socket.socket, face_gate: GateFactory | None = None) -> None:
    """Serve the console on ``sock`` until SIGINT/SIGTERM."""
    engine = open_database(settings, pool_size=10)  # request threads wait for a connection no longer
    redis = server_redis(redis_url(settings, "the web console"), max_connections=64)
    web = server(settings, engine, redis, face_gate)
    try:
        host, port = sock.getsockname()[:2]
        log.info("web console listening", extra={"url": f"{scheme(settings)}://{host}:{port}/"})
        await web.serve(sockets=[sock])
    finally:
        await close_mounted(web.config.app)  # the dashboards' live feeds
        await redis.aclose()
        engine.dispose()


def serve(settings: ServerSettings, face_gate: GateFactory | None = None) -> None:
    """Run the console until a stop signal (the CLI's ``telework web``)."""
    tls_factory(settings)  # a bad TELEWORK_TLS_CERT/_KEY is one line before anything else
    sock = bind(settings)
    with sock:
        asyncio.run(run(settings, sock, face_gate))
