"""Through the console, against a real gateway and agent: revoking or rotating a device ends its live
session within 5 s, and the devices list shows the agent online with its version meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from core.settings import ServerSettings
from tests.servers import serving
from tests.waiting import wait_until
from tests.web_world import World, make_world

FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.3, open_timeout_s=5)
REVOKED = "gateway closed the session with 1008: agent token revoked"


@asynccontextmanager
async def running_agent(port: int, token: str) -> AsyncIterator[tuple[AgentSession, asyncio.Task[None]]]:
    agent = AgentSession(f"ws://127.0.0.1:{port}/v1/agent", token, FAST, agent_version="7.1.0", name="pc")
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.connected.wait(), 10)
        yield agent, task
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)


async def device_of(client: httpx.AsyncClient, agent_id: str) -> dict[str, object]:
    found: dict[str, object] = (await client.get(f"/api/v1/devices/{agent_id}")).json()
    return found


async def test_a_device_revoked_or_rotated_in_the_console_is_disconnected_within_5_s(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """Issue in the console, connect a real agent (online, its version listed); rotate: closed 1008
    within 5 s; connected again with the new token, revoke: closed within 5 s, then shown offline."""
    async with make_world(tmp_path, database_url, engine, redis_url) as world:
        gateway = ServerSettings(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url, gateway_port=0
        )
        async with serving(gateway) as (_app, port):
            await scenario(world, port)


async def scenario(world: World, port: int) -> None:
    client, csrf = await world.signed_in("alice")
    headers = {"X-CSRF-Token": csrf}
    issued = await client.post(
        "/api/v1/devices", json={"id": "pc-live", "user_id": world.ids["wataru"]}, headers=headers
    )
    assert issued.status_code == 201, issued.text
    async with running_agent(port, issued.json()["token"]) as (agent, task):
        shown = await wait_until(
            lambda: _online(client), 5, interval=0.05, what="the console shows the agent online"
        )
        assert (shown["online"], shown["agent_version"], shown["live_known"]) == (True, "7.1.0", True)
        rotated = await client.post("/api/v1/devices/pc-live/token", headers=headers)
        assert rotated.status_code == 200
        started = time.monotonic()
        await asyncio.wait_for(asyncio.shield(task), 5)
        assert time.monotonic() - started < 5
        assert agent.fatal == REVOKED
    async with running_agent(port, rotated.json()["token"]) as (agent, task):
        revoked = await client.post("/api/v1/devices/pc-live/revoke", headers=headers)
        assert (revoked.status_code, revoked.json()["changed"]) == (200, True)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.shield(task), 5)
        assert time.monotonic() - started < 5
        assert agent.fatal == REVOKED
    offline = await wait_until(lambda: _offline(client), 5, interval=0.05, what="the agent shown offline")
    assert offline["revoked"] is True


async def _online(client: httpx.AsyncClient) -> dict[str, object] | None:
    device = await device_of(client, "pc-live")
    return device if device["online"] else None


async def _offline(client: httpx.AsyncClient) -> dict[str, object] | None:
    device = await device_of(client, "pc-live")
    return device if device["online"] is False else None
