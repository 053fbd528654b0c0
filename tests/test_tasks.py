"""Tasks a tenant offers its workers: storage, `telework admin task`, the welcome's list, live
``tasks`` pushes to open sessions, the agent's offered tasks and punches; also the heartbeat
that follows a pushed interval at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agent.client import AgentSession
from agent.desk import Desk, save_duty
from agent.punch import DutyState, PunchRequest
from agent.session_parts import SessionOptions
from realtime.protocol import AgentSettings, TaskPayload, TasksPush
from realtime.tenant_settings import publish_settings
from realtime.tenant_tasks import TaskOffers, decode_tasks, publish_tasks
from storage.accounts import create_tenant
from storage.db import make_engine
from storage.tasks import TaskError, active_tasks, create_task, deactivate_task
from telework.cli import main
from tests.admin_world import audit_as_admin
from tests.desk_world import USER, scene_image, watched_pipeline
from tests.test_gateway import Running, gateway_on, recv, session
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.5, open_timeout_s=5.0, usage_report_s=0)


def tasks_of(database_url: str, tenant: str, *create: str, remove: tuple[str, ...] = ()) -> None:
    engine = make_engine(database_url)
    try:
        for name in create:
            create_task(engine, tenant, name)
        for name in remove:
            deactivate_task(engine, tenant, name)
    finally:
        engine.dispose()


def cli(args: list[str], database_url: str, redis_url: str, tmp_path: Path, mp: pytest.MonkeyPatch) -> int:
    mp.setenv("TELEWORK_DATABASE_URL", database_url)
    mp.setenv("TELEWORK_REDIS_URL", redis_url)
    mp.setenv("TELEWORK_DATA_DIR", str(tmp_path))
    return main(args)


# ------------------------------------------------------------------- storage


def test_create_deactivate_and_list_tasks(database_url: str) -> None:
    """Active tasks are listed sorted per tenant; removing deactivates; creating again reactivates."""
    engine = make_engine(database_url)
    try:
        create_tenant(engine, "acme", "Acme")
        create_tenant(engine, "other", "Other")
        assert create_task(engine, "acme", " Review ") is True
        assert create_task(engine, "acme", "Design") is True
        assert create_task(engine, "acme", "Design") is False
        create_task(engine, "other", "Golf")
        assert active_tasks(engine, "acme") == ["Design", "Review"]
        deactivate_task(engine, "acme", "Design")
        assert active_tasks(engine, "acme") == ["Review"]
        assert create_task(engine, "acme", "Design") is True
        assert active_tasks(engine, "acme") == ["Design", "Review"]
        assert active_tasks(engine, "other") == ["Golf"]
        assert active_tasks(engine, "nobody") == []
        with pytest.raises(TaskError, match=r"^tenant 'nobody' does not exist$"):
            create_task(engine, "nobody", "Design")
        with pytest.raises(TaskError, match=r"^tenant 'acme' offers no task 'Golf'$"):
            deactivate_task(engine, "acme", "Golf")
        with pytest.raises(TaskError, match=r"^task name: expected 1-200 characters, got an empty name$"):
            create_task(engine, "acme", "  ")
        with pytest.raises(TaskError, match=r"^task name: expected at most 200 characters, got 201$"):
            create_task(engine, "acme", "x" * 201)
    finally:
        engine.dispose()


# -------------------------------------------------------------- offers cache


async def test_task_offers_cache_and_announcements() -> None:
    """Reads are cached for the TTL; an announcement replaces the cache and beats a read under way."""
    reads: list[str] = []
    clock = [0.0]
    db = {"acme": ["Design"]}

    def lookup(tenant: str) -> list[str]:
        reads.append(tenant)
        return list(db[tenant])

    offers = TaskOffers(lookup, ttl_s=10.0, clock=lambda: clock[0])
    assert await offers.get("acme") == ["Design"]
    db["acme"] = ["Design", "Review"]
    assert await offers.get("acme") == ["Design"]
    assert reads == ["acme"]
    clock[0] = 10.0
    assert await offers.get("acme") == ["Design", "Review"]
    offers.announced("acme", [])
    assert await offers.get("acme") == []
    assert reads == ["acme", "acme"]

    def read_then_announced(tenant: str) -> list[str]:
        slow.announced(tenant, ["New"])  # a change announced while this read runs
        return ["Old"]

    slow = TaskOffers(read_then_announced, ttl_s=10.0)
    assert await slow.get("acme") == ["New"]
    assert slow.cached("acme") == ["New"]


def test_decode_tasks_drops_what_is_not_a_tasks_frame() -> None:
    """A published tasks frame decodes; garbage and other frame types are dropped (None)."""
    assert decode_tasks("acme", '{"type":"tasks","tasks":["A"]}') == TasksPush(tasks=["A"])
    assert decode_tasks("acme", "{not json") is None
    assert decode_tasks("acme", '{"type":"ack","seq":1}') is None


# ------------------------------------------------------------------- gateway


async def test_welcome_carries_only_the_tenants_active_tasks(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The welcome lists the agent's tenant's active tasks: not another tenant's, not removed ones."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        other = f"o{running.tenant}"
        engine = make_engine(database_url)
        try:
            create_tenant(engine, other, "Other")
        finally:
            engine.dispose()
        tasks_of(database_url, running.tenant, "Review", "Design", "Dropped", remove=("Dropped",))
        tasks_of(database_url, other, "Golf")
        async with session(running) as (_ws, welcome):
            assert welcome.tasks == ["Design", "Review"]


async def test_cli_task_change_is_pushed_to_the_open_session(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    aredis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`telework admin task create|remove` while a session is open: a tasks frame with the new list
    reaches it within a second; a session opened afterwards gets the new list in its welcome."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        async with session(running) as (ws, welcome):
            assert welcome.tasks == []
            await asyncio.wait_for(running.gateway.subscribed.wait(), 5)
            args = ["admin", "task", "create", "--tenant", running.tenant, "Design"]
            code = await asyncio.to_thread(cli, args, database_url, redis_url, tmp_path, monkeypatch)
            assert code == 0
            assert (
                capsys.readouterr().out
                == f"task 'Design' of tenant {running.tenant} created; 1 task(s) offered\n"
            )
            async with asyncio.timeout(1.0):
                assert await recv(ws) == TasksPush(tasks=["Design"])
            args = ["admin", "task", "remove", "--tenant", running.tenant, "Design"]
            assert await asyncio.to_thread(cli, args, database_url, redis_url, tmp_path, monkeypatch) == 0
            async with asyncio.timeout(1.0):
                assert await recv(ws) == TasksPush(tasks=[])
            await publish_tasks(aredis, running.tenant, ["Announced"])
            assert await recv(ws) == TasksPush(tasks=["Announced"])
        async with session(running) as (_ws, later):
            assert later.tasks == ["Announced"]  # the announced list is newer than the cached read


def test_cli_task_list_errors_and_unreachable_redis(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`admin task list` prints one name a line; a bad tenant is one line and exit 2; with Redis down the
    change is made and a warning says open sessions get it at their next connection."""
    engine = audit_as_admin(make_engine(database_url), tmp_path)
    try:
        create_tenant(engine, "acme", "Acme")
    finally:
        engine.dispose()
    capsys.readouterr()  # the master key's creation, logged
    down = "redis://127.0.0.1:1/0"
    assert (
        cli(
            ["admin", "task", "create", "--tenant", "acme", "Review"],
            database_url,
            down,
            tmp_path,
            monkeypatch,
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert out == "task 'Review' of tenant acme created; 1 task(s) offered\n"
    assert err.startswith(
        "telework admin: warning: open agent sessions were not told (redis: ConnectionError: "
    )
    assert err.endswith("they get the new list at their next connection\n")
    assert (
        cli(
            ["admin", "task", "create", "--tenant", "acme", "Design"],
            database_url,
            down,
            tmp_path,
            monkeypatch,
        )
        == 0
    )
    capsys.readouterr()
    assert cli(["admin", "task", "list", "--tenant", "acme"], database_url, down, tmp_path, monkeypatch) == 0
    assert capsys.readouterr() == ("Design\nReview\n", "")
    assert (
        cli(
            ["admin", "task", "remove", "--tenant", "acme", "Golf"], database_url, down, tmp_path, monkeypatch
        )
        == 2
    )
    assert capsys.readouterr() == ("", "telework admin: error: tenant 'acme' offers no task 'Golf'\n")
    assert (
        cli(["admin", "task", "create", "--tenant", "nope", "X"], database_url, down, tmp_path, monkeypatch)
        == 2
    )
    assert capsys.readouterr() == ("", "telework admin: error: tenant 'nope' does not exist\n")


# --------------------------------------------------------------------- agent


async def run_agent(running: Running) -> tuple[AgentSession, asyncio.Task[None]]:
    agent = AgentSession(running.url, running.token, FAST)
    task = asyncio.create_task(agent.run())
    await wait_until(agent.connected.is_set, 15, what="agent connected")
    return agent, task


async def stop_agent(agent: AgentSession, task: asyncio.Task[None]) -> None:
    agent.stop()
    await asyncio.wait_for(task, 15)


async def test_agent_tasks_follow_the_server_and_punches_accept_only_offered_ones(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AgentSession.tasks is the welcome's list, replaced by each tasks frame; the desk offers it (over
    the stand-in list) and, with the user's real face in view, starts an offered task and refuses
    another, then starts a task created while connected."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        tasks_of(database_url, running.tenant, "Design")
        agent, task = await run_agent(running)
        try:
            assert agent.tasks == ("Design",)
            duty = tmp_path / "duty.json"
            save_duty(duty, DutyState(on_duty=True))
            pipeline = watched_pipeline()
            desk = Desk(agent, pipeline, tasks=("Stand-in",), duty_path=duty, clock=lambda: 100.0)
            pipeline.clock = lambda: 100.0
            pipeline.process(0.0, scene_image(USER))
            assert desk.offered_tasks() == ("Design",)
            refused = await desk.punch(PunchRequest("task_start", "Support"))
            assert (refused.accepted, refused.reason) == (False, "unknown_task")
            accepted = await desk.punch(PunchRequest("task_start", "Design"))
            assert (accepted.accepted, accepted.payloads) == (True, (TaskPayload(task="Design"),))

            await asyncio.wait_for(running.gateway.subscribed.wait(), 5)
            args = ["admin", "task", "create", "--tenant", running.tenant, "Support"]
            assert await asyncio.to_thread(cli, args, database_url, redis_url, tmp_path, monkeypatch) == 0
            await wait_until(lambda: agent.tasks == ("Design", "Support"), 1, what="tasks pushed")
            switched = await desk.punch(PunchRequest("task_start", "Support"))
            assert (switched.accepted, switched.payloads) == (True, (TaskPayload(task="Support"),))
            await agent.wait_acked()
            assert agent.connects == 1

            tasks_of(database_url, running.tenant, remove=("Design", "Support"))
            await publish_tasks(running.gateway.redis, running.tenant, [])
            await wait_until(lambda: agent.tasks == (), 1, what="empty list pushed")
            assert desk.offered_tasks() == ("Stand-in",)  # the server offers none: the stand-in list
        finally:
            await stop_agent(agent, task)


async def test_heartbeat_follows_a_shorter_pushed_interval_at_once(
    database_url: str, redis_url: str, tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """With a 300 s heartbeat interval, a pushed 1 s interval (the shortest allowed) brings the next heartbeat
    within 3 s (the agent sends nothing but heartbeats here), not after the 300 s wait that was under way."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        await publish_settings(aredis, running.tenant, AgentSettings(heartbeat_interval_s=300.0))
        agent, task = await run_agent(running)
        try:
            assert agent.settings.heartbeat_interval_s == 300.0
            await asyncio.wait_for(running.gateway.subscribed.wait(), 5)
            await wait_until(lambda: agent.meter.total_sent > 0, 5, what="the first heartbeat")
            first = agent.meter.total_sent
            await publish_settings(aredis, running.tenant, AgentSettings(heartbeat_interval_s=1.0))
            await wait_until(
                lambda: agent.meter.total_sent > first, 3, what="a heartbeat at the new interval"
            )
            assert agent.settings.heartbeat_interval_s == 1.0
        finally:
            await stop_agent(agent, task)


# ----------------------------------------------------------------- evidence


def test_evidence_store_alone_resolves_the_incident_foreign_key() -> None:
    """Importing storage.evidence_store alone puts the incident table (its foreign key's target) in the
    metadata, so a gateway process storing evidence needs no workaround import."""
    code = (
        "import storage.evidence_store\n"
        "from sqlmodel import SQLModel\n"
        "print('incident' in SQLModel.metadata.tables)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")
