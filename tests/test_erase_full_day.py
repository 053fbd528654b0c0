"""A person with a full working day of data, exported and then erased through the real `telework`
command while the gateway, the persistence worker and the builder run: nothing about them is left
in the database, the evidence store, Redis or its append-only file, and their open session is closed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import zipfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from core.settings import ServerSettings
from realtime import keys
from realtime.embedded_redis import EmbeddedRedis
from realtime.protocol import DutyPayload, IncidentPayload, StatePayload, TaskPayload
from storage import accounts
from storage.activity import EventRecord, Incident, Interval
from storage.agent_settings_store import change_settings
from storage.crypto import sha256_hex
from storage.evidence_models import FaceTemplate
from storage.evidence_store import EvidenceStore, open_store, save_evidence
from storage.models import Group, Membership
from storage.personal_registry import HOLDINGS
from storage.planning import DailyRollup, Schedule
from tests.agent_world import building, master_key, persisting
from tests.conftest import ROOT
from tests.servers import RestartableGateway
from tests.test_builder import T0, Agent, produce
from tests.waiting import wait_until
from workers.rollup import RollupWorker

pytestmark = pytest.mark.slow

TENANT = "acme"
FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.3, open_timeout_s=5)
AIKO = ("aiko", "Aiko Sato", "pc-17")  # login, name, agent
FORBIDDEN = ("aiko", "sato")  # searched case-insensitively everywhere
# the agent id is searched everywhere but in the audit log, whose entries name agents by id
# (``agent:pc-17``): an agent id must not be made of a person's name (README, Personal data)


def _rows(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def _day(aiko_pc: Agent, ben_pc: Agent, shas: list[str]) -> list[dict[str, str]]:
    """09:00-18:00 JST: duty, presence changes every 10 min, two tasks, a peeking incident with
    evidence, periodic evidence; ben's agent a short morning."""
    day = [
        aiko_pc.entry(0, DutyPayload(on_duty=True, verified=True)),
        aiko_pc.entry(1, TaskPayload(task="sales")),
    ]
    for minute in range(0, 540, 10):
        state = "away" if 180 <= minute < 240 else "present"
        evidence = [shas[minute // 60 % 8]] if minute % 60 == 0 else []
        day.append(aiko_pc.entry(minute + 2, StatePayload(state=state, evidence=evidence)))
    day += [
        aiko_pc.entry(300, TaskPayload(task="email")),
        aiko_pc.entry(330, IncidentPayload(kind="peeking", phase="start", evidence=shas[8:10])),
        aiko_pc.entry(331, IncidentPayload(kind="peeking", phase="end")),
        aiko_pc.entry(539, TaskPayload(task=None)),
        aiko_pc.entry(540, DutyPayload(on_duty=False, verified=True)),
        ben_pc.entry(0, DutyPayload(on_duty=True, verified=True)),
        ben_pc.entry(5, StatePayload(state="present")),
        ben_pc.entry(120, DutyPayload(on_duty=False, verified=True)),
    ]
    return day


@asynccontextmanager
async def _server(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[ServerSettings, EmbeddedRedis]]:
    """An embedded Redis (AOF on, as `telework up` runs it), the gateway, a worker and the builder."""
    redis_server = EmbeddedRedis(tmp_path / "redis")
    redis_server.start()
    settings = ServerSettings(
        data_dir=tmp_path / "server", redis_url=redis_server.url, database_url=database_url, gateway_port=0,
        auth_cache_s=0, revocation_check_s=0.2, worker_block_ms=20, tenant_refresh_s=0.1,
        master_key=master_key(),
    )  # fmt: skip
    try:
        yield settings, redis_server
    finally:
        redis_server.stop()


def _world(engine: Engine, store: EvidenceStore) -> tuple[int, int, str, list[bytes], bytes]:
    """aiko (worker) and ben (manager) with groups, schedules, settings, a face template, evidence."""
    accounts.create_tenant(engine, TENANT, "Acme")
    aiko = accounts.create_user(engine, TENANT, AIKO[0], AIKO[1])
    ben = accounts.create_user(engine, TENANT, "ben", "Ben Mori", role="manager")
    token = accounts.create_agent(engine, TENANT, AIKO[2], AIKO[0])
    accounts.create_agent(engine, TENANT, "ben-pc", "ben")
    face = store.put(TENANT, b"aiko-face" * 100)  # before the session writes: it may create the data key
    key_id, _ = store.keyring.active(TENANT)
    with Session(engine) as s:
        group = Group(tenant_id=TENANT, name="sales", created_at=T0)
        s.add(group)
        s.flush()
        assert group.id is not None
        s.add(Membership(group_id=group.id, user_id=aiko, tenant_id=TENANT, created_at=T0))
        s.add(Membership(group_id=group.id, user_id=ben, role="manager", tenant_id=TENANT, created_at=T0))
        for weekday in range(5):
            for uid in (aiko, ben):
                s.add(Schedule(tenant_id=TENANT, user_id=uid, weekday=weekday, start_time=time(9),
                               end_time=time(18), created_at=T0))  # fmt: skip
        s.add(FaceTemplate(tenant_id=TENANT, user_id=aiko, blob=store.keyring.seal(TENANT, b"v", b"t"),
                           key_id=key_id, engine="dlib", model_version="1", image_sha256=face.sha256,
                           image_key=face.storage_key, created_at=T0))  # fmt: skip
        s.commit()
    change_settings(engine, TENANT, {"away_after_s": 45}, login=AIKO[0], actor="cli:root")
    change_settings(engine, TENANT, {"threshold_level": 4}, group="sales", actor="cli:root")
    images = [f"still {i} of the day".encode() * 50 for i in range(10)]
    for i, data in enumerate(images):
        save_evidence(engine, store, TENANT, data, kind="camera" if i % 2 else "screen",
                      taken_at=T0 + timedelta(minutes=i * 60), agent_id=AIKO[2])  # fmt: skip
    ben_still = b"ben's still" * 50
    save_evidence(
        engine, store, TENANT, ben_still, kind="camera", taken_at=T0, agent_id="ben-pc", user_id=ben
    )
    return aiko, ben, token, images, ben_still


async def _telework(settings: ServerSettings, *argv: str) -> tuple[int, str, str]:
    """The real command in its own process, configured as the running server is."""
    env = {
        **os.environ,
        "TELEWORK_DATA_DIR": str(settings.data_dir),
        "TELEWORK_DATABASE_URL": settings.database_url or "",
        "TELEWORK_REDIS_URL": settings.redis_url or "",
        "TELEWORK_MASTER_KEY": settings.master_key.get_secret_value() if settings.master_key else "",
        "TELEWORK_REVOCATION_CHECK_S": str(settings.revocation_check_s),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telework", *argv, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def _database_text(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table of the database, as text, per table (read from the schema itself)."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {
            t.name: [json.dumps([str(v) for v in row], ensure_ascii=False) for row in conn.execute(select(t))]
            for t in meta.sorted_tables
        }


def _user_refs(engine: Engine, user_id: int) -> list[str]:
    """Columns anywhere that still point at the user id (foreign keys and user columns)."""
    meta = MetaData()
    meta.reflect(engine)
    found = []
    with engine.connect() as conn:
        for t in meta.sorted_tables:
            for c in t.columns:
                linked = any(fk.column.table.name == "tw_user" for fk in c.foreign_keys)
                if linked or c.name in ("user_id", "reviewer_id") or (t.name == "tw_user" and c.name == "id"):
                    n = conn.execute(select(func.count()).select_from(t).where(c == user_id)).scalar_one()
                    if n:
                        found.append(f"{t.name}.{c.name}: {n}")
    return found


async def _redis_text(client: aioredis.Redis) -> dict[str, str]:
    """Every key of the Redis and its whole value, as text."""
    out: dict[str, str] = {}
    async for raw in client.scan_iter(count=500):
        key = raw.decode()
        kind_raw: Any = await client.type(key)
        kind = kind_raw.decode()
        value: Any
        if kind == "stream":
            value = await client.xrange(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "set":
            value = await client.smembers(key)
        elif kind == "string":
            value = await client.get(key)
        else:
            value = f"<{kind}>"
        out[key] = repr(value)
    return out


def _aof_text(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*.aof*")) if p.is_file()).lower()


async def test_a_full_working_day_is_exported_then_erased_everywhere(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Export holds every declared table; erase-user in one run leaves no id, login, name or agent of
    aiko's in any table, object, Redis key or the AOF; ben's data stays; aiko's session is closed
    and her token refused."""
    async with AsyncExitStack() as stack:
        settings, redis_server = await stack.enter_async_context(_server(database_url, tmp_path))
        store = open_store(settings, engine)
        aiko, ben, token, images, ben_still = _world(engine, store)
        client = aioredis.Redis.from_url(redis_server.url)
        stack.push_async_callback(client.aclose)
        await client.config_set("aof-use-rdb-preamble", "no")  # a rewritten AOF is plain commands: searchable
        await stack.enter_async_context(persisting(settings, engine))
        await stack.enter_async_context(building(settings, engine))
        gateway = RestartableGateway(settings)
        await gateway.start()
        stack.push_async_callback(gateway.stop)

        aiko_pc, ben_pc = Agent(TENANT, AIKO[2]), Agent(TENANT, "ben-pc")
        day = _day(aiko_pc, ben_pc, [sha256_hex(i) for i in images])
        await produce(client, TENANT, day)
        await client.xadd(keys.events_stream(TENANT), {"e": '{"agent_id": "pc-17", "broken'})
        await wait_until(lambda: _rows(engine, EventRecord) == len(day), 30, what="the day stored")
        await wait_until(
            lambda: _rows(engine, Incident) == 1 and _rows(engine, Interval) >= 8, 30, what="built"
        )
        await wait_until(lambda: client.xlen(keys.dead_letter_stream(TENANT)), 30, what="a dead letter")
        RollupWorker(settings, engine).cycle(T0 + timedelta(hours=10))
        with engine.connect() as conn:
            worked = conn.execute(
                select(col(DailyRollup.worked_s)).where(
                    col(DailyRollup.user_id) == aiko, col(DailyRollup.day) == T0.date()
                )
            ).scalar_one()
        assert worked == 540 * 60

        session = AgentSession(gateway.url, token, FAST, name=AIKO[2])
        running = asyncio.create_task(session.run())
        await asyncio.wait_for(session.connected.wait(), 10)
        assert "aiko sato" in (await _redis_text(client))[keys.live_hash(TENANT)].lower()
        await wait_until(lambda: b"aiko sato" in _aof_text(redis_server.folder), 5, what="the AOF holds her")

        out = tmp_path / "aiko.zip"
        code, printed, err = await _telework(
            settings, "admin", "export-user", "--tenant", TENANT, "aiko", "--out", str(out)
        )
        assert (code, err) == (0, "")
        with zipfile.ZipFile(out) as zf:
            doc = json.loads(zf.read("person.json"))
            names = set(zf.namelist())
        assert set(doc["tables"]) == {h.name for h in HOLDINGS}
        filled = {name for name, rows in doc["tables"].items() if rows}
        assert filled >= {"evidence_object", "face_template", "incident", "interval", "event", "daily_rollup",
                          "task_rollup", "schedule", "membership", "user_agent_settings",
                          "agent_settings_change", "agent_device", "tw_user"}  # fmt: skip
        assert len(doc["tables"]["event"]) == len(day) - 3  # ben's three are not hers
        assert len(doc["tables"]["evidence_object"]) == 10 and len(names) == 1 + 10 + 1
        assert doc["problems"] == []
        held = doc["redis"]
        assert [s["agent_id"] for s in held[keys.live_hash(TENANT)]] == [AIKO[2]]
        assert "Aiko Sato" in held[keys.live_hash(TENANT)][0]["state"]
        assert len(held[keys.dead_letter_stream(TENANT)]) >= 1  # the broken entry, stored only in Redis
        assert len(held[keys.events_stream(TENANT)]) == len(day) - 3 + 1

        code, printed, err = await _telework(
            settings, "admin", "erase-user", "--tenant", TENANT, "aiko", "--yes"
        )
        assert (code, err) == (0, ""), err
        lines = printed.splitlines()
        assert lines[0] == f"user aiko of tenant acme erased (user:{aiko})"
        assert f"  database event: {len(day) - 3} row(s) deleted" in lines
        assert "  evidence store evidence: 10 object(s) deleted" in lines
        assert "  evidence store face_images: 1 object(s) deleted" in lines
        assert lines[-2:] == ["  redis: settings cache rewritten", "  redis: append-only file rewritten"]

        await asyncio.wait_for(running, 10)
        assert session.fatal == "gateway closed the session with 1008: agent token revoked"
        again = AgentSession(gateway.url, token, FAST, name=AIKO[2])
        await asyncio.wait_for(again.run(), 10)
        assert again.connects == 0 and again.fatal is not None

        texts = _database_text(engine)
        left = {t: [r for r in rows if any(w in r.lower() for w in FORBIDDEN)] for t, rows in texts.items()}
        assert {t: rows for t, rows in left.items() if rows} == {}
        agent_left = {t for t, rows in texts.items() for r in rows if AIKO[2] in r}
        assert agent_left <= {"audit_log"}
        assert _user_refs(engine, aiko) == []
        mentions = [r for t, rows in texts.items() for r in rows if f"user:{aiko}" in r]
        assert mentions and all(
            t == "audit_log" for t, rows in texts.items() for r in rows if f"user:{aiko}" in r
        )
        assert any("Ben Mori" in r for r in texts["tw_user"]) and _user_refs(engine, ben)

        evidence_root = settings.data_dir / "evidence"
        stored = {p.relative_to(evidence_root).as_posix() for p in evidence_root.rglob("*") if p.is_file()}
        ours = {k for k in stored if k.startswith(("evidence/", "erasure/"))}
        assert ours == {f"evidence/{TENANT}/{sha256_hex(ben_still)[:2]}/{sha256_hex(ben_still)}"}
        assert store.get(TENANT, sha256_hex(ben_still)) == ben_still

        redis_text = await _redis_text(client)
        words = (*FORBIDDEN, AIKO[2])
        assert {k: v for k, v in redis_text.items() if any(w in (k + v).lower() for w in words)} == {}
        cache = json.loads((await client.get(keys.settings_key(TENANT))) or b"{}")
        assert str(aiko) not in cache.get("users", {}) and str(aiko) not in cache.get("members", {})
        assert [g["name"] for g in cache["groups"].values()] == ["sales"]  # rewritten, not dropped
        assert b"ben-pc" in _aof_text(redis_server.folder)
        assert not any(w.encode() in _aof_text(redis_server.folder) for w in words)
        if engine.dialect.name == "sqlite":  # nor in the database's files (freed pages, the WAL); the
            # agent id stays there, in the audit log's targets
            path = Path(str(make_url(database_url).database))
            files = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
            assert b"ben-pc" in files.lower()
            assert [w for w in FORBIDDEN if w.encode() in files.lower()] == []
