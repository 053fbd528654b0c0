"""HTTPS/WSS for real: a gateway and the web console on port 0 with a dev-cert certificate, and the
agent connecting with the CA, refused without it, refused on a wrong pin, refused on ws:// off loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from websockets.asyncio.server import ServerConnection, serve

from agent.client import AgentSession
from agent.tls import AgentTls, agent_tls
from core.devcert import DevCert, ensure, wanted_names
from core.settings import sqlite_url
from core.tls import format_pin, server_context
from realtime.redis_client import server_redis
from tests.agent_world import FAST, world
from tests.waiting import wait_until
from tests.web_world import PASSWORD, Clock, populate, settings_for
from web.serve import bind, server

ROOT = Path(__file__).resolve().parent.parent
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def devcert(tmp_path: Path) -> DevCert:
    return ensure(tmp_path / "tls", wanted_names("localhost", []), "localhost")


@pytest.fixture
def refusals(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The errors of the agent's "cannot reach gateway" lines, as they are logged."""
    caplog.set_level(logging.WARNING, logger="agent.client")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "cannot reach gateway":
                lines.append(str(record.__dict__["error"]))

    handler = Collect()
    logging.getLogger("agent.client").addHandler(handler)
    yield lines
    logging.getLogger("agent.client").removeHandler(handler)


def wss(port: int) -> str:
    return f"wss://localhost:{port}/v1/agent"


async def refused(session: AgentSession, refusals: list[str], attempts: int = 2) -> None:
    """Run ``session`` until it tried ``attempts`` times; it never got a welcome."""
    runner = asyncio.create_task(session.run())
    try:
        await wait_until(lambda: len(refusals) >= attempts, 15, what="the agent's refused attempts")
        assert (session.connects, session.fatal) == (0, None)
    finally:
        session.stop()
        await asyncio.wait_for(runner, 10)


@SQLITE
async def test_the_agent_connects_over_wss_with_the_ca_and_the_right_pin(
    tmp_path: Path, database_url: str, redis_url: str, devcert: DevCert
) -> None:
    """Gateway on WSS with the dev-cert pair: the agent trusting ca.crt, pinning the key, is welcomed."""
    pair = {"tls_cert": devcert.server_cert, "tls_key": devcert.server_key}
    async with world(redis_url, database_url, tmp_path, start=True, persist=False, **pair) as w:
        options = replace(FAST, tls=agent_tls(wss(w.gateway.port), False, devcert.ca_cert, devcert.pin))
        session = AgentSession(wss(w.gateway.port), w.token, options, name=w.agent_id)
        runner = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(session.connected.wait(), 15)
            assert session.welcome is not None and session.welcome.agent_id == w.agent_id
        finally:
            session.stop()
            await asyncio.wait_for(runner, 10)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=devcert.ca_cert)) as client:
            health = await client.get(f"https://localhost:{w.gateway.port}/healthz")
        assert health.status_code == 200


@SQLITE
async def test_without_the_ca_or_with_a_wrong_pin_the_agent_is_refused(
    tmp_path: Path, database_url: str, redis_url: str, devcert: DevCert, refusals: list[str]
) -> None:
    """System trust only: certificate verify failed, naming TELEWORK_AGENT_TLS_CA_FILE; the CA but
    another pin: refused before the token is sent, naming the key's real pin. Neither is welcomed."""
    pair = {"tls_cert": devcert.server_cert, "tls_key": devcert.server_key}
    async with world(redis_url, database_url, tmp_path, start=True, persist=False, **pair) as w:
        url = wss(w.gateway.port)
        untrusted = AgentSession(url, w.token, replace(FAST, tls=agent_tls(url, False, None, "")))
        await refused(untrusted, refusals)
        assert all("CERTIFICATE_VERIFY_FAILED" in line for line in refusals), refusals
        assert refusals[0].endswith(
            "(the gateway's certificate is not trusted: "
            "set TELEWORK_AGENT_TLS_CA_FILE to the CA that signed it)"
        )
        refusals.clear()
        wrong = format_pin(b"\x07" * 32)
        pinned = AgentSession(url, w.token, replace(FAST, tls=agent_tls(url, False, devcert.ca_cert, wrong)))
        await refused(pinned, refusals)
        assert set(refusals) == {
            f"CertificateRefused: the gateway's certificate key is {devcert.pin}, "
            "which is not a pin of TELEWORK_AGENT_TLS_PIN"
        }


async def test_plain_ws_to_another_machine_is_refused_before_any_attempt() -> None:
    """ws:// to a non-loopback address: the session ends at once, fatal with the reason, no attempt."""
    session = AgentSession("ws://192.0.2.1:8700/v1/agent", "token", replace(FAST, tls=AgentTls()))
    await asyncio.wait_for(session.run(), 5)
    assert (session.attempts, session.connects) == (0, 0)
    assert session.fatal == (
        "refusing unencrypted ws:// to '192.0.2.1' (not this machine): use wss:// "
        "(or TELEWORK_AGENT_ALLOW_INSECURE=1 for development only)"
    )


@SQLITE
async def test_the_console_over_https_sets_the_secure_host_cookie(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, devcert: DevCert
) -> None:
    """`telework web` with the pair: HTTPS only, and a sign-in answers with `__Host-tw_session`, Secure."""
    populate(engine, Clock())
    settings = settings_for(
        tmp_path, database_url, redis_url, web_port=0, web_secure_cookie=False,
        tls_cert=devcert.server_cert, tls_key=devcert.server_key,
    )  # fmt: skip
    assert settings.web_secure_cookie  # TLS makes the cookie Secure, whatever was asked
    sock = bind(settings)
    redis = server_redis(redis_url)
    web = server(settings, engine, redis)
    task = asyncio.create_task(web.serve(sockets=[sock]))
    try:
        await wait_until(lambda: web.started, timeout=20, what="uvicorn started")
        port = sock.getsockname()[1]
        trust = ssl.create_default_context(cafile=devcert.ca_cert)
        async with httpx.AsyncClient(base_url=f"https://localhost:{port}", verify=trust) as client:
            answer = await client.post(
                "/api/v1/session", json={"tenant": "acme", "login": "alice", "password": PASSWORD}
            )
            assert answer.status_code == 200
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith("__Host-tw_session=")
            assert {"Secure", "HttpOnly", "Path=/", "SameSite=lax"} <= {p.strip() for p in cookie.split(";")}
            assert (await client.get("/api/v1/me")).json()["login"] == "alice"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/signin")  # no plain HTTP on the TLS port
    finally:
        web.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
        await redis.aclose()


@pytest.mark.parametrize("command", ["gateway", "web"])
def test_a_bad_key_or_certificate_stops_start_up_with_one_line_naming_it(
    tmp_path: Path, devcert: DevCert, command: str
) -> None:
    """`telework gateway`/`web` with a key that is not a key, or a missing certificate: exit 2,
    one line naming TELEWORK_TLS_KEY or TELEWORK_TLS_CERT, before Redis or the database is needed."""
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    missing = tmp_path / "none.crt"
    base = {
        **os.environ,
        "TELEWORK_DATABASE_URL": sqlite_url(tmp_path),
        "TELEWORK_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    cases = [
        ({"TELEWORK_TLS_CERT": str(devcert.server_cert), "TELEWORK_TLS_KEY": str(junk)},
         f"TELEWORK_TLS_KEY: '{junk}' holds no usable PEM private key ("),
        ({"TELEWORK_TLS_CERT": str(missing), "TELEWORK_TLS_KEY": str(devcert.server_key)},
         f"TELEWORK_TLS_CERT: cannot read the certificate '{missing}': No such file or directory"),
    ]  # fmt: skip
    for pair, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "telework", command, "--port", "0", "--data-dir", str(tmp_path)],
            cwd=ROOT, env={**base, **pair}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"telework {command}: error: {message}"), lines


async def test_a_wrong_pin_is_refused_before_the_token_leaves_the_agent(devcert: DevCert) -> None:
    """A WSS server with the dev-cert pair that records every message: under a wrong pin it completes
    the TLS handshake yet receives nothing (no hello, no token); under the right pin it gets the hello."""
    received: list[str | bytes] = []

    async def record(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)

    context = server_context(devcert.server_cert, devcert.server_key)
    async with serve(record, "127.0.0.1", 0, ssl=context) as wss_server:
        port = wss_server.sockets[0].getsockname()[1]
        url = wss(port)
        wrong = agent_tls(url, False, devcert.ca_cert, format_pin(b"\x07" * 32))
        session = AgentSession(url, "secret-token", replace(FAST, tls=wrong))
        runner = asyncio.create_task(session.run())
        try:
            await wait_until(lambda: session.attempts >= 2, 15, what="two refused attempts")
        finally:
            session.stop()
            await asyncio.wait_for(runner, 10)
        assert received == []
        right = agent_tls(url, False, devcert.ca_cert, devcert.pin)
        session = AgentSession(url, "secret-token", replace(FAST, tls=right, open_timeout_s=0.5))
        runner = asyncio.create_task(session.run())
        try:
            await wait_until(lambda: received, 15, what="the hello")
        finally:
            session.stop()
            await asyncio.wait_for(runner, 10)
        assert '"token":"secret-token"' in str(received[0])
