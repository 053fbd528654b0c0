"""Gateway on uvicorn (port 0) with a real websockets client, real Redis and real databases.

Also the pure parts behind it: live-state folding and the auth cache.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.config import ConfigError
from core.settings import ServerSettings, sqlite_url
from realtime import keys, live
from realtime.app import create_app
from realtime.auth import Authenticator
from realtime.gateway import Gateway
from realtime.protocol import (
    Ack,
    AgentSettings,
    DutyEvent,
    DutyPayload,
    Error,
    Event,
    Events,
    Heartbeat,
    Hello,
    IncidentEvent,
    IncidentPayload,
    LiveState,
    SettingsPush,
    StateEvent,
    StatePayload,
    StreamEvent,
    TaskEvent,
    TaskPayload,
    Welcome,
    encode,
    new_event_id,
    parse_record,
    parse_server_frame,
)
from realtime.session import Rejection
from realtime.tenant_settings import load_settings, publish_settings
from storage.accounts import (
    AgentIdentity,
    create_agent,
    create_tenant,
    create_user,
    hash_token,
    lookup_token,
    revoke_agent,
)
from storage.db import make_engine, upgrade
from tests.servers import serving
from tests.waiting import wait_until

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # within the accepted clock window
RECV_TIMEOUT = 5.0


# ------------------------------------------------------------------ harness


@dataclass
class Running:
    app: Starlette
    port: int
    tenant: str
    agent_id: str
    token: str
    database_url: str

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent"

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway


def provision(database_url: str) -> tuple[str, str, str]:
    """A fresh tenant with one user and one agent; returns (tenant, agent_id, token)."""
    tenant = f"t{uuid.uuid4().hex[:12]}"
    agent_id = f"pc-{uuid.uuid4().hex[:8]}"
    engine = make_engine(database_url)
    try:
        create_tenant(engine, tenant, "Test tenant")
        create_user(engine, tenant, "alice", "Alice")
        token = create_agent(engine, tenant, agent_id, "alice")
    finally:
        engine.dispose()
    return tenant, agent_id, token


@asynccontextmanager
async def gateway_on(
    database_url: str, redis_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[Running]:
    tenant, agent_id, token = provision(database_url)
    settings = ServerSettings(
        data_dir=tmp_path, redis_url=redis_url, database_url=database_url, gateway_port=0, **overrides
    )
    async with serving(settings) as (app, port):
        yield Running(app, port, tenant, agent_id, token, database_url)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
async def gw(sqlite_db: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running:
        yield running


async def recv(ws: ClientConnection) -> Any:
    return parse_server_frame(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))


@asynccontextmanager
async def session(
    running: Running, token: str | None = None
) -> AsyncIterator[tuple[ClientConnection, Welcome]]:
    async with connect(running.url, proxy=None, max_size=None) as ws:
        await ws.send(encode(Hello(token=token or running.token, agent_version="test", protocol=1)))
        welcome = await recv(ws)
        assert isinstance(welcome, Welcome), welcome
        yield ws, welcome


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server to close the connection; returns (code, reason)."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    return ws.close_code, ws.close_reason


async def refused(running: Running, first_frame: str) -> tuple[int | None, str | None]:
    async with connect(running.url, proxy=None) as ws:
        await ws.send(first_frame)
        return await closed_with(ws)


async def live_of(redis: aioredis.Redis, running: Running) -> LiveState | None:
    raw = await redis.hget(keys.live_hash(running.tenant), running.agent_id)
    return None if raw is None else parse_record(raw, LiveState)


def state(seq: int, value: str = "present", ts: datetime = T0) -> StateEvent:
    return StateEvent(id=new_event_id(), seq=seq, ts=ts, payload=StatePayload(state=value))


async def until_live(predicate: Callable[[], Awaitable[LiveState | None]], what: str) -> LiveState:
    """wait_until for an async LiveState predicate (typed: waiting.wait_until's T cannot be inferred here)."""
    found: Any = await wait_until(cast(Any, predicate), 5, what=what)
    return cast(LiveState, found)


def http_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# --------------------------------------------------------------- handshake


async def test_hello_gets_welcome_with_tenant_settings_and_goes_online(
    database_url: str, redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A valid token gets a welcome with tenant, agent and the tenant's stored settings; agent goes online."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        custom = AgentSettings(threshold_level=5, away_after_s=12.0)
        await publish_settings(aredis, running.tenant, custom)
        async with session(running) as (_ws, welcome):
            assert (welcome.tenant, welcome.agent_id, welcome.settings) == (
                running.tenant,
                running.agent_id,
                custom,
            )
            assert welcome.protocol == 1
            assert abs((welcome.server_time - datetime.now(UTC)).total_seconds()) < 5
            uuid.UUID(welcome.session_id)
            now_live = await live_of(aredis, running)
            assert now_live is not None
            assert (now_live.online, now_live.user, now_live.state) == (True, "Alice", None)
            assert await aredis.sismember(keys.TENANTS, running.tenant)


async def test_bad_token_is_closed_with_1008(database_url: str, redis_url: str, tmp_path: Path) -> None:
    """An unknown token -> close 1008 'invalid agent token'."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        hello = encode(Hello(token="twa_not-a-token", agent_version="test", protocol=1))
        assert await refused(running, hello) == (1008, "invalid agent token")


async def test_revoked_token_is_closed_with_1008(database_url: str, redis_url: str, tmp_path: Path) -> None:
    """A revoked agent's token -> close 1008 'agent token revoked'."""
    async with gateway_on(database_url, redis_url, tmp_path) as running:
        engine = make_engine(database_url)
        revoke_agent(engine, running.agent_id)
        engine.dispose()
        hello = encode(Hello(token=running.token, agent_version="test", protocol=1))
        assert await refused(running, hello) == (1008, "agent token revoked")


async def test_unsupported_protocol_is_closed_with_1002(gw: Running) -> None:
    """Protocol 99 -> close 1002 naming the supported versions."""
    hello = encode(Hello(token=gw.token, agent_version="test", protocol=99))
    assert await refused(gw, hello) == (1002, "unsupported protocol version 99; supported: 1")


async def test_first_frame_must_be_hello(gw: Running) -> None:
    """A heartbeat before hello -> close 1002 saying a hello was expected."""
    assert await refused(gw, encode(Heartbeat(ts=T0))) == (
        1002,
        "expected a hello frame first, got heartbeat",
    )


# ----------------------------------------------------------------- events


async def test_events_are_acked_with_highest_seq_after_landing_in_the_stream(
    gw: Running, aredis: aioredis.Redis
) -> None:
    """A batch gets Ack(highest seq) and exactly its events are in the tenant stream, as StreamEvents."""
    batch: list[Event] = [
        state(1),
        DutyEvent(id=new_event_id(), seq=2, ts=T0, payload=DutyPayload(on_duty=True)),
        TaskEvent(id=new_event_id(), seq=3, ts=T0, payload=TaskPayload(task="report")),
        IncidentEvent(
            id=new_event_id(), seq=4, ts=T0, payload=IncidentPayload(kind="peeking", phase="start")
        ),
        state(5, "away"),
    ]
    shuffled = random.sample(batch, len(batch))
    async with session(gw) as (ws, welcome):
        await ws.send(encode(Events(events=shuffled)))
        assert await recv(ws) == Ack(seq=5)
        entries: Any = await aredis.xrange(keys.events_stream(gw.tenant))
    assert len(entries) == 5
    stored = [parse_record(fields[keys.ENTRY_FIELD], StreamEvent) for _id, fields in entries]
    assert [s.event for s in stored] == shuffled
    assert {(s.tenant, s.agent_id, s.session_id) for s in stored} == {
        (gw.tenant, gw.agent_id, welcome.session_id)
    }


async def test_state_event_updates_live_hash_and_publishes(gw: Running, aredis: aioredis.Redis) -> None:
    """After a state event the live hash holds the new LiveState (with the hello's agent version) and
    the same JSON is published."""
    pubsub = aredis.pubsub()
    await pubsub.subscribe(keys.live_channel(gw.tenant))
    try:
        async with session(gw) as (ws, _welcome):
            first = state(1, "away", T0)
            await ws.send(encode(Events(events=[first])))
            assert await recv(ws) == Ack(seq=1)

            async def published_away() -> LiveState | None:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if msg is None:
                    return None
                record: LiveState = parse_record(msg["data"], LiveState)
                return record if record.state == "away" else None

            message = await until_live(published_away, "published live state with state=away")
            stored = await live_of(aredis, gw)
            assert stored == message
            assert (message.online, message.state, message.since, message.last_seq) == (True, "away", T0, 1)
            assert (message.last_event_id, message.agent_version) == (first.id, "test")  # from the hello
    finally:
        await pubsub.aclose()


async def test_replayed_events_are_stored_and_acked_but_do_not_rewind_live_state(
    gw: Running, aredis: aioredis.Redis
) -> None:
    """Events with seq <= last_seq (a spool replay) are XADDed and acked; live state keeps the newer value."""
    async with session(gw) as (ws, _welcome):
        await ws.send(encode(Events(events=[state(2, "away")])))
        assert await recv(ws) == Ack(seq=2)
        await ws.send(encode(Events(events=[state(1, "present")])))
        assert await recv(ws) == Ack(seq=1)
        stored = await live_of(aredis, gw)
    assert stored is not None
    assert (stored.state, stored.last_seq) == ("away", 2)
    assert await aredis.xlen(keys.events_stream(gw.tenant)) == 2


async def test_bad_frames_get_error_frames_and_the_session_stays_up(
    sqlite_db: str, redis_url: str, tmp_path: Path
) -> None:
    """Unknown type, bad field, second hello: error frames, events acked after; oversize: close 1009."""
    async with (
        gateway_on(sqlite_db, redis_url, tmp_path, max_frame_bytes=2048) as running,
        session(running) as (ws, _welcome),
    ):
        await ws.send(json.dumps({"type": "bogus"}))
        assert await recv(ws) == Error(
            code="unknown_type",
            message="unknown frame type 'bogus'; expected one of hello, events, heartbeat",
            field="type",
        )
        bad = json.loads(encode(Events(events=[state(1)])))
        bad["events"][0]["payload"]["state"] = "asleep"
        await ws.send(json.dumps(bad))
        error = await recv(ws)
        assert (error.code, error.field) == ("invalid_field", "events.0.payload.state")
        assert error.message.startswith("events.0.payload.state: Input should be 'present'")
        await ws.send(encode(Hello(token=running.token, agent_version="test", protocol=1)))
        assert (await recv(ws)).code == "unexpected_hello"
        await ws.send(encode(Events(events=[state(1)])))
        assert await recv(ws) == Ack(seq=1)
        await ws.send("x" * 5000)
        assert await closed_with(ws) == (1009, "frame is 5000 bytes; the limit is 2048 bytes")


async def test_heartbeat_is_answered(gw: Running) -> None:
    """A heartbeat frame gets a heartbeat with the server's current time."""
    async with session(gw) as (ws, _welcome):
        await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
        reply = await recv(ws)
    assert isinstance(reply, Heartbeat)
    assert abs((reply.ts - datetime.now(UTC)).total_seconds()) < 5


# ------------------------------------------------------------ going offline


async def test_silent_session_is_closed_4000_and_marked_offline(
    sqlite_db: str, redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """No frame within heartbeat_timeout_s -> close 4000 and live state online=False."""
    async with gateway_on(sqlite_db, redis_url, tmp_path, heartbeat_timeout_s=0.5) as running:
        async with session(running) as (ws, _welcome):
            assert await closed_with(ws) == (4000, "heartbeat timeout: no frame for 0.5s")
        stored = await until_live(
            lambda: _offline(aredis, running), "live state online=False after the heartbeat timeout"
        )
    assert stored.online is False


async def _offline(redis: aioredis.Redis, running: Running) -> LiveState | None:
    stored = await live_of(redis, running)
    return stored if stored is not None and not stored.online else None


async def test_disconnect_marks_offline_and_keeps_state(gw: Running, aredis: aioredis.Redis) -> None:
    """Disconnect marks the agent offline keeping state and seq; a reconnect brings it back online."""
    async with session(gw) as (ws, _welcome):
        await ws.send(encode(Events(events=[state(7, "away")])))
        assert await recv(ws) == Ack(seq=7)
    stored = await until_live(lambda: _offline(aredis, gw), "offline after disconnect")
    assert (stored.state, stored.last_seq) == ("away", 7)
    async with session(gw):
        again = await live_of(aredis, gw)
    assert again is not None
    assert (again.online, again.state, again.last_seq) == (True, "away", 7)


# -------------------------------------------------------------- settings push


async def test_published_settings_are_pushed_to_open_sessions(gw: Running, aredis: aioredis.Redis) -> None:
    """publish_settings stores the tenant's settings and a settings frame reaches its open session."""
    async with session(gw) as (ws, welcome):
        assert welcome.settings == AgentSettings()
        await asyncio.wait_for(gw.gateway.subscribed.wait(), 5)
        new = AgentSettings(heartbeat_interval_s=2.0, incident_action="lock")
        await publish_settings(aredis, gw.tenant, new)
        assert await recv(ws) == SettingsPush(settings=new)
    assert await load_settings(aredis, gw.tenant) == new


async def test_unreadable_stored_settings_fall_back_to_defaults(aredis: aioredis.Redis) -> None:
    """A corrupt settings value is reported and replaced by the defaults, never crashes a session."""
    await aredis.set(keys.settings_key("acme"), '{"threshold_level": 9}')
    assert await load_settings(aredis, "acme") == AgentSettings()


# ------------------------------------------------------------------- http


async def test_healthz_and_readyz(gw: Running) -> None:
    """/healthz answers ok; /readyz answers ready while Redis is reachable."""
    assert await asyncio.to_thread(http_get, gw.port, "/healthz") == (200, {"status": "ok"})
    assert await asyncio.to_thread(http_get, gw.port, "/readyz") == (200, {"status": "ready", "sessions": 0})


async def test_readyz_is_503_when_redis_is_down(sqlite_db: str, tmp_path: Path) -> None:
    """/readyz answers 503 with the Redis error when Redis does not answer; /healthz still 200."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with gateway_on(sqlite_db, f"redis://127.0.0.1:{closed_port}/0", tmp_path) as running:
        status, body = await asyncio.to_thread(http_get, running.port, "/readyz")
        assert await asyncio.to_thread(http_get, running.port, "/healthz") == (200, {"status": "ok"})
    assert (status, body["status"]) == (503, "unavailable")
    assert body["error"] == (
        f"redis: ConnectionError: Error 111 connecting to 127.0.0.1:{closed_port}. "
        f"Connect call failed ('127.0.0.1', {closed_port})."
    )


def test_create_app_requires_a_redis_url(tmp_path: Path) -> None:
    """Without TELEWORK_REDIS_URL the gateway refuses to build, naming the variable."""
    with pytest.raises(ConfigError) as info:
        create_app(ServerSettings(data_dir=tmp_path))
    assert info.value.key == "TELEWORK_REDIS_URL"
    assert "`telework up` starts an embedded Redis" in str(info.value)


# -------------------------------------------------------------- auth cache


async def test_auth_cache_keeps_valid_identities_for_the_ttl(database_url: str) -> None:
    """A valid identity is served from cache until the TTL passes; then the revocation is seen."""
    tenant, agent_id, token = provision(database_url)
    engine = make_engine(database_url)
    now = [100.0]
    auth = Authenticator(lambda t: lookup_token(engine, t), ttl_s=30.0, clock=lambda: now[0])
    try:
        with engine.connect() as conn:
            query = text("SELECT id FROM tw_user WHERE tenant_id = :t")
            alice = conn.execute(query, {"t": tenant}).scalar_one()
        identity = AgentIdentity(
            tenant=tenant,
            agent_id=agent_id,
            user="Alice",
            revoked=False,
            user_id=alice,
            token_hash=hash_token(token),
        )
        assert await auth.authenticate(token) == identity
        revoke_agent(engine, agent_id)
        now[0] = 129.0
        assert await auth.authenticate(token) == identity
        now[0] = 130.0
        assert await auth.authenticate(token) == Rejection(1008, "agent token revoked")
        assert await auth.authenticate("twa_unknown") == Rejection(1008, "invalid agent token")
    finally:
        engine.dispose()


# ------------------------------------------------------------- live.fold (pure)


def base_live(**changes: Any) -> LiveState:
    return LiveState(**{"tenant": "acme", "agent_id": "pc-1", "online": True, "last_seen": T0, **changes})


def test_fold_state_duty_task() -> None:
    """State sets state and since; duty sets on_duty; task sets task; last_* follow the newest event."""
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    task = TaskEvent(id=new_event_id(), seq=3, ts=t2, payload=TaskPayload(task="mail"))
    events: list[Event] = [
        state(1, "away", T0),
        DutyEvent(id=new_event_id(), seq=2, ts=t1, payload=DutyPayload(on_duty=True)),
        task,
    ]
    folded = live.fold(base_live(), events)
    assert (folded.state, folded.since, folded.on_duty, folded.task) == ("away", T0, True, "mail")
    assert (folded.last_seq, folded.last_event_id, folded.last_seen) == (3, task.id, t2)


def test_fold_keeps_since_while_the_state_does_not_change() -> None:
    """A repeated state keeps the time it began; a new state moves since."""
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    folded = live.fold(base_live(), [state(1, "away", T0), state(2, "away", t1)])
    assert (folded.state, folded.since) == ("away", T0)
    assert live.fold(folded, [state(3, "present", t2)]).since == t2


def test_fold_ignores_replays_and_orders_by_seq() -> None:
    """Events at or below last_seq are ignored; a batch is applied in seq order."""
    current = base_live(state="away", last_seq=5)
    assert live.fold(current, [state(4, "present"), state(5, "present")]) is current
    folded = live.fold(current, [state(7, "peeking"), state(6, "present"), state(3, "present")])
    assert (folded.state, folded.last_seq) == ("peeking", 7)


def test_fold_uses_now_for_last_seen_and_incidents_only_move_seq() -> None:
    """With now given, last_seen is the receive time; incident and gap events change no state field."""
    now = T0 + timedelta(minutes=5)
    incident = IncidentEvent(
        id=new_event_id(), seq=1, ts=T0, payload=IncidentPayload(kind="impersonation", phase="start")
    )
    folded = live.fold(base_live(state="present"), [incident], now)
    assert (folded.state, folded.last_seq, folded.last_event_id, folded.last_seen) == (
        "present",
        1,
        incident.id,
        now,
    )


def test_online_and_offline_transitions_keep_the_state() -> None:
    """went_online keeps the previous state (or starts empty); went_offline only flips online."""
    now = T0 + timedelta(hours=1)
    fresh = live.went_online("acme", "pc-1", "Alice", now, None)
    assert fresh == LiveState(tenant="acme", agent_id="pc-1", user="Alice", online=True, last_seen=now)
    previous = base_live(state="away", on_duty=True, last_seq=9, online=False)
    back = live.went_online("acme", "pc-1", "Alice", now, previous)
    assert (back.online, back.state, back.on_duty, back.last_seq, back.last_seen) == (
        True,
        "away",
        True,
        9,
        now,
    )
    gone = live.went_offline(back, now + timedelta(seconds=1))
    assert (gone.online, gone.state, gone.last_seen) == (False, "away", now + timedelta(seconds=1))
