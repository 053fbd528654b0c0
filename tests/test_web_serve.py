"""``telework web``: the console on a real uvicorn (port 0), and its start-up errors as one line."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from core.settings import sqlite_url
from realtime.redis_client import server_redis
from telework.cli import main
from tests.access_matrix import route_table
from tests.waiting import wait_until
from tests.web_world import PASSWORD, Clock, populate, settings_for
from web.serve import bind, server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_console_serves_sign_in_pages_api_and_css_over_real_http(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """On uvicorn: sign-in page, CSS, the OpenAPI document, an API sign-in and /me, then a clean stop."""
    populate(engine, Clock())
    settings = settings_for(tmp_path, database_url, redis_url, web_port=0, web_secure_cookie=False)
    sock = bind(settings)
    redis = server_redis(redis_url)
    web = server(settings, engine, redis)
    task = asyncio.create_task(web.serve(sockets=[sock]))
    try:
        await wait_until(lambda: web.started, timeout=20, what="uvicorn started")
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/signin", headers={"accept-language": "en"})
            assert page.status_code == 200 and "<h1>Sign in</h1>" in page.text
            assert "server" not in page.headers
            css = await client.get("/static/console.css")
            assert (css.status_code, css.headers["content-type"]) == (200, "text/css; charset=utf-8")
            spec = (await client.get("/api/v1/openapi.json")).json()
            api_routes = {path for _, path in route_table(web.config.app) if path.startswith("/api/v1/")}
            assert set(spec["paths"]) == api_routes - {"/api/v1/openapi.json"}  # every API route, documented
            assert {"/api/v1/me", "/api/v1/users/{user_id}", "/api/v1/devices"} <= set(spec["paths"])
            assert (await client.get("/docs")).status_code == 404  # no CDN-loaded API pages
            answer = await client.post(
                "/api/v1/session", json={"tenant": "acme", "login": "alice", "password": PASSWORD}
            )
            assert answer.status_code == 200
            assert answer.headers["set-cookie"].startswith("tw_session=")  # plain HTTP: no __Host- prefix
            me = await client.get("/api/v1/me")
            assert (me.status_code, me.json()["login"]) == (200, "alice")
    finally:
        web.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
        await redis.aclose()


def test_a_taken_port_is_one_line_naming_the_web_settings(tmp_path: Path) -> None:
    """`telework web` on a port in use: exit 2, one line naming the address and TELEWORK_WEB_PORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "TELEWORK_DATABASE_URL": sqlite_url(tmp_path),
            "TELEWORK_REDIS_URL": "redis://127.0.0.1:1/0",
        }
        done = subprocess.run(
            [sys.executable, "-m", "telework", "web", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"telework web: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(set another address with --host/--port or TELEWORK_WEB_HOST/TELEWORK_WEB_PORT)"
    ]


def test_web_help_names_its_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """`telework web --help` exits 0 and names TELEWORK_WEB_HOST and TELEWORK_WEB_PORT."""
    with pytest.raises(SystemExit) as done:
        main(["web", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert out.startswith("usage: telework web") and "TELEWORK_WEB_HOST" in out and "TELEWORK_WEB_PORT" in out
