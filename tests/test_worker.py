"""The persistence worker (stream consumer + persistence handler) against real Redis and databases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from core.settings import ServerSettings
from realtime import keys
from realtime.protocol import DeadLetter, StateEvent, StatePayload, StreamEvent, encode, new_event_id
from tests.conftest import ROOT
from tests.fault_kit import DatabaseLock, worker_killed_mid_batch
from tests.waiting import wait_until
from workers.consumer import StreamConsumer
from workers.dead_letter import text_of
from workers.persist import persist_consumer

GROUP = keys.PERSIST_GROUP


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def event_json(tenant: str, seq: int, agent: str = "pc-1") -> str:
    now = datetime.now(UTC)
    return encode(
        StreamEvent(
            tenant=tenant,
            agent_id=agent,
            session_id="sess-1",
            received_at=now,
            event=StateEvent(id=new_event_id(), seq=seq, ts=now, payload=StatePayload(state="present")),
        )
    )


async def produce(client: aioredis.Redis, tenant: str, entries: list[dict[Any, Any]]) -> list[str]:
    """What the gateway does: XADD each entry to the tenant's stream, SADD the tenant."""
    async with client.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(keys.events_stream(tenant), dict(fields))
        pipe.sadd(keys.TENANTS, tenant)
        replies = await pipe.execute()
    return [text_of(r) for r in replies[:-1]]


def events(tenant: str, n: int, agent: str = "pc-1") -> list[dict[str, str]]:
    return [{keys.ENTRY_FIELD: event_json(tenant, i + 1, agent)} for i in range(n)]


def settings_for(redis_url: str, database_url: str, tmp_path: Path, **extra: object) -> ServerSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "data_dir": tmp_path,
        "worker_name": "w1",
        "worker_block_ms": 20,
        "tenant_refresh_s": 0.05,
    }
    values.update(extra)
    return ServerSettings.model_validate(values)


W = TypeVar("W", bound=StreamConsumer[Any])


@asynccontextmanager
async def running(worker: W) -> AsyncIterator[W]:
    """Run the worker in the background; stop it cleanly and re-raise its errors on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def count_rows(engine: Engine, tenant: str) -> int:
    def query() -> int:
        with engine.connect() as conn:
            sql = text("SELECT count(*), count(DISTINCT id) FROM event WHERE tenant_id = :t")
            total, distinct = conn.execute(sql, {"t": tenant}).one()
        if total != distinct:
            raise AssertionError(f"expected distinct event ids, got {total} rows for {distinct} ids")
        return int(total)

    return await asyncio.to_thread(query)


async def pending(client: aioredis.Redis, tenant: str) -> int:
    return int((await client.xpending(keys.events_stream(tenant), GROUP))["pending"])


def settled(client: aioredis.Redis, engine: Engine, tenant: str, rows: int) -> Callable[[], object]:
    async def check() -> bool:
        return await count_rows(engine, tenant) == rows and await pending(client, tenant) == 0

    return check


async def dead_letters(client: aioredis.Redis, tenant: str) -> list[DeadLetter]:
    entries: list[tuple[str, dict[str, str]]] = await client.xrange(keys.dead_letter_stream(tenant))  # type: ignore[assignment]
    return [DeadLetter.model_validate_json(fields[keys.ENTRY_FIELD]) for _, fields in entries]


async def test_batch_persisted_once_and_acked(aredis, redis_url, database_url, engine, tmp_path):
    """N events -> exactly N rows and nothing pending; the same entries XADDed again -> still N rows."""
    tenant, n = new_tenant(), 300
    batch = events(tenant, n)
    await produce(aredis, tenant, batch)
    worker = persist_consumer(
        settings_for(redis_url, database_url, tmp_path, worker_batch=100), engine, aredis
    )
    async with running(worker):
        await wait_until(settled(aredis, engine, tenant, n), timeout=20, what=f"{n} rows, 0 pending")
        await produce(aredis, tenant, batch)
        await wait_until(lambda: worker.stats.read == 2 * n, timeout=20, what="duplicates read")
        await wait_until(settled(aredis, engine, tenant, n), timeout=20, what="duplicates acked")
    assert await count_rows(engine, tenant) == n
    stored = worker.handler.stats
    assert (stored.inserted, stored.duplicates, worker.stats.dead_lettered) == (n, n, 0)
    assert await aredis.xlen(keys.dead_letter_stream(tenant)) == 0


async def test_malformed_entries_dead_lettered(aredis, redis_url, database_url, engine, tmp_path):
    """Malformed entries are dead-lettered with their reason and acked; good ones beside them persist."""
    tenant = new_tenant()
    naive = json.loads(event_json(tenant, 9))
    naive["event"]["ts"] = "2026-11-25T09:00:00"
    bad = [{"x": "1"}, {keys.ENTRY_FIELD: "{not json"}, {keys.ENTRY_FIELD: json.dumps(naive)}]
    good = events(tenant, 3)
    ids = await produce(aredis, tenant, [good[0], bad[0], good[1], bad[1], bad[2], good[2]])
    worker = persist_consumer(settings_for(redis_url, database_url, tmp_path), engine, aredis)
    async with running(worker):
        await wait_until(settled(aredis, engine, tenant, 3), timeout=20, what="3 rows, 0 pending")
        letters = await wait_until(
            lambda: _at_least(dead_letters(aredis, tenant), 3), timeout=10, what="3 dead letters"
        )
    assert [(d.entry_id, d.reason, d.deliveries, d.fields) for d in letters] == [
        (ids[1], "entry has no field 'e'; fields: x", 1, bad[0]),
        (
            ids[3],
            "field 'e' is not valid JSON: Invalid JSON: key must be a string at line 1 column 2",
            1,
            bad[1],
        ),
        (ids[4], "invalid StreamEvent: event.ts: Input should have timezone info", 1, bad[2]),
    ]
    assert {d.stream for d in letters} == {keys.events_stream(tenant)}
    assert await count_rows(engine, tenant) == 3
    assert (worker.handler.stats.inserted, worker.stats.dead_lettered) == (3, 3)


async def _none_pending(client: aioredis.Redis, tenant: str) -> bool:
    return await pending(client, tenant) == 0


async def _at_least(letters_coro, n: int) -> list[DeadLetter] | None:
    letters = await letters_coro
    return letters if len(letters) >= n else None


async def test_over_delivered_entries_stored_alone_or_dead_lettered(
    aredis, redis_url, database_url, engine, tmp_path
):
    """Entries a crashed consumer held: 7 deliveries (limit 5) stored alone; 12 (over twice) dead-lettered."""
    tenant = new_tenant()
    stream = keys.events_stream(tenant)
    await aredis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    batch = events(tenant, 3)
    first, second, fatal = await produce(aredis, tenant, batch)
    await aredis.xreadgroup(GROUP, "crashed", {stream: ">"}, count=3)  # delivery 1
    for _ in range(5):  # deliveries 2..6
        await aredis.xclaim(stream, GROUP, "crashed", 0, [first, second])
    for _ in range(10):  # deliveries 2..11
        await aredis.xclaim(stream, GROUP, "crashed", 0, [fatal])
    settings = settings_for(
        redis_url, database_url, tmp_path, max_deliveries=5, claim_idle_ms=100, claim_interval_s=0.05
    )
    worker = persist_consumer(settings, engine, aredis)
    async with running(worker):
        await wait_until(settled(aredis, engine, tenant, 2), timeout=10, what="2 rows, 0 pending")
        letters = await wait_until(
            lambda: _at_least(dead_letters(aredis, tenant), 1), timeout=10, what="letter"
        )
    assert [(d.entry_id, d.reason, d.deliveries, d.fields) for d in letters] == [
        (
            fatal,
            "delivered 12 times (limit 5; more than 10 means it ends the process even when handled alone)",
            12,
            batch[2],
        )
    ]
    assert (worker.stats.alone, worker.handler.stats.inserted, worker.stats.dead_lettered) == (2, 2, 1)


async def test_own_pending_entries_reconciled_at_start(aredis, redis_url, database_url, engine, tmp_path):
    """Entries a previous run under the same name read but never acked are persisted at start-up."""
    tenant = new_tenant()
    stream = keys.events_stream(tenant)
    await aredis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await produce(aredis, tenant, events(tenant, 40))
    await aredis.xreadgroup(GROUP, "w1", {stream: ">"}, count=40)  # the previous w1 died here
    assert await pending(aredis, tenant) == 40
    worker = persist_consumer(
        settings_for(redis_url, database_url, tmp_path, claim_idle_ms=600_000), engine, aredis
    )
    async with running(worker):
        await wait_until(settled(aredis, engine, tenant, 40), timeout=20, what="40 rows, 0 pending")
    assert (worker.handler.stats.inserted, worker.stats.claimed, worker.stats.dead_lettered) == (40, 0, 0)


async def test_two_workers_store_every_event_once(aredis, redis_url, database_url, engine, tmp_path):
    """Two workers in one group over two tenants: every event stored exactly once, none processed twice."""
    tenants = [new_tenant(), new_tenant()]
    for tenant in tenants:
        await produce(aredis, tenant, events(tenant, 500, agent="pc-a") + events(tenant, 500, agent="pc-b"))
    workers = [
        persist_consumer(
            settings_for(redis_url, database_url, tmp_path, worker_name=name, worker_batch=50), engine, aredis
        )
        for name in ("w1", "w2")
    ]
    async with running(workers[0]), running(workers[1]):
        for tenant in tenants:
            await wait_until(settled(aredis, engine, tenant, 1000), timeout=30, what=f"{tenant}: 1000 rows")
    assert sum(w.handler.stats.inserted for w in workers) == 2000
    assert sum(w.stats.read for w in workers) == 2000
    assert sum(w.handler.stats.duplicates for w in workers) == 0


@pytest.mark.slow
async def test_sigkilled_worker_entries_claimed_exactly_once(
    aredis, redis_url, database_url, engine, tmp_path
):
    """A worker SIGKILLed with an uncommitted batch: another worker claims its entries; each stored once."""
    tenant, n = new_tenant(), 300
    stream = keys.events_stream(tenant)
    await produce(aredis, tenant, events(tenant, n))
    env = {
        **os.environ,
        "TELEWORK_REDIS_URL": redis_url,
        "TELEWORK_DATABASE_URL": database_url,
        "TELEWORK_WORKER_NAME": "w1",
        "TELEWORK_DATA_DIR": str(tmp_path),
        "TELEWORK_TENANT_REFRESH_S": "0.05",
    }
    lock = DatabaseLock(database_url, engine)
    async with worker_killed_mid_batch(aredis, stream, "w1", n, env, tmp_path / "w1.log", lock):
        assert await count_rows(engine, tenant) == 0
        settings = settings_for(
            redis_url, database_url, tmp_path, worker_name="w2", claim_idle_ms=100, claim_interval_s=0.05
        )
        worker = persist_consumer(settings, engine, aredis)
        async with running(worker):
            await wait_until(settled(aredis, engine, tenant, n), timeout=30, what=f"{n} rows, 0 pending")
    assert await count_rows(engine, tenant) == n
    assert (worker.stats.claimed, worker.handler.stats.inserted, worker.stats.dead_lettered) == (n, n, 0)


async def test_deleted_stream_recreated_and_consumed(aredis, redis_url, database_url, engine, tmp_path):
    """A tenant stream deleted under a blocked worker is recreated; later events are still stored."""
    tenant = new_tenant()
    await produce(aredis, tenant, events(tenant, 5))
    worker = persist_consumer(
        settings_for(redis_url, database_url, tmp_path, worker_block_ms=2000), engine, aredis
    )
    async with running(worker):
        await wait_until(settled(aredis, engine, tenant, 5), timeout=20, what="5 rows")
        await aredis.delete(keys.events_stream(tenant))
        await produce(aredis, tenant, events(tenant, 7))
        await wait_until(settled(aredis, engine, tenant, 12), timeout=20, what="12 rows after the delete")
    assert worker.handler.stats.inserted == 12


async def test_bytes_client_dead_letters_non_utf8_entry(redis_url, database_url, engine, tmp_path):
    """With a raw (bytes) client, a non-UTF-8 entry is dead-lettered and a good one beside it stored."""
    tenant = new_tenant()
    raw = aioredis.Redis.from_url(redis_url, decode_responses=False)
    text_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ids = await produce(raw, tenant, [{b"e": b"\xff{}"}, *events(tenant, 1)])
        worker = persist_consumer(settings_for(redis_url, database_url, tmp_path), engine, raw)
        async with running(worker):
            await wait_until(settled(text_client, engine, tenant, 1), timeout=20, what="1 row")
            letters = await wait_until(lambda: _at_least(dead_letters(text_client, tenant), 1), timeout=10)
    finally:
        await raw.aclose()
        await text_client.aclose()
    assert [(d.entry_id, d.reason, d.fields) for d in letters] == [
        (
            ids[0],
            "field 'e' is not UTF-8 text: 'utf-8' codec can't decode byte 0xff in position 0: "
            "invalid start byte",
            {"e": "\\xff{}"},
        )
    ]


@pytest.mark.slow
async def test_sigterm_stops_worker_process_cleanly(aredis, redis_url, database_url, engine, tmp_path):
    """`python -m workers` persists what the gateway wrote and exits 0 on SIGTERM."""
    tenant = new_tenant()
    await produce(aredis, tenant, events(tenant, 50))
    env = {
        **os.environ,
        "TELEWORK_REDIS_URL": redis_url,
        "TELEWORK_DATABASE_URL": database_url,
        "TELEWORK_WORKER_NAME": "w1",
        "TELEWORK_DATA_DIR": str(tmp_path),
    }
    log_path = tmp_path / "w1.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers", cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        await wait_until(settled(aredis, engine, tenant, 50), timeout=30, what="50 rows, 0 pending")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "consumer stopped" in log_path.read_text()


async def test_row_the_database_rejects_is_dead_lettered(aredis, redis_url, database_url, engine, tmp_path):
    """A row PostgreSQL rejects (session id too long) is dead-lettered; its batch mates are stored."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    tenant = new_tenant()
    now = datetime.now(UTC)
    long_session = StreamEvent(
        tenant=tenant,
        agent_id="pc-1",
        session_id="s" * 65,
        received_at=now,
        event=StateEvent(id=new_event_id(), seq=3, ts=now, payload=StatePayload(state="away")),
    )
    good = events(tenant, 2)
    ids = await produce(aredis, tenant, [good[0], {keys.ENTRY_FIELD: encode(long_session)}, good[1]])
    worker = persist_consumer(settings_for(redis_url, database_url, tmp_path), engine, aredis)
    async with running(worker):
        await wait_until(settled(aredis, engine, tenant, 2), timeout=20, what="2 rows, 0 pending")
        letters = await wait_until(lambda: _at_least(dead_letters(aredis, tenant), 1), timeout=10)
    assert [(d.entry_id, d.reason) for d in letters] == [
        (ids[1], "database rejected the event: value too long for type character varying(64)")
    ]
