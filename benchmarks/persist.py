"""Persistence throughput of ONE worker process: a pre-filled Redis stream -> persistence worker -> database.

Fills a tenant's event stream with N real StreamEvent entries (a mix of state,
duty, task and incident events from 100 agents, encoded with protocol.encode,
XADDed as the gateway does), then runs one persistence worker (the stream
consumer of workers/consumer.py with the handler of workers/persist.py) in this
process until every event is stored, and reports events per second.

    python benchmarks/persist.py --db postgresql --events 200000 \
        --database-url postgresql+psycopg://root@127.0.0.1:5432/test --redis-url redis://127.0.0.1:6379/6
    python benchmarks/persist.py --db sqlite --events 100000

PostgreSQL runs in a fresh database (dropped at the end); SQLite in a temporary
folder. Without --redis-url an embedded redis-server is started. ``--profile
FILE`` writes cProfile stats of the timed part. Prints a table, then one line
``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
from bench_common import print_result
from sqlalchemy import text

from core.settings import ServerSettings, sqlite_url
from realtime import keys
from realtime.embedded_redis import EmbeddedRedis
from realtime.protocol import (
    DutyEvent,
    DutyPayload,
    IncidentEvent,
    IncidentPayload,
    StateEvent,
    StatePayload,
    StreamEvent,
    TaskEvent,
    TaskPayload,
    encode,
    new_event_id,
)
from storage.db import create_database, drop_database, make_engine, upgrade
from workers.consumer import StreamConsumer
from workers.persist import PersistHandler, persist_consumer

log = logging.getLogger("benchmarks.persist")
AGENTS = 100
FILL_PAGE = 2000
STATES = ("present", "away", "present", "peeking", "present", "camera_blocked")


def make_event(tenant: str, agent: int, seq: int, ts: datetime) -> str:
    """One encoded StreamEvent; mostly state changes, some duty, task and incident events."""
    kind = seq % 20
    eid = new_event_id()
    event: StateEvent | DutyEvent | TaskEvent | IncidentEvent
    if kind == 0:
        event = DutyEvent(id=eid, seq=seq, ts=ts, payload=DutyPayload(on_duty=seq % 40 == 0, verified=True))
    elif kind == 1:
        event = TaskEvent(id=eid, seq=seq, ts=ts, payload=TaskPayload(task=f"task-{seq % 7}"))
    elif kind == 2:
        event = IncidentEvent(
            id=eid,
            seq=seq,
            ts=ts,
            payload=IncidentPayload(
                kind="peeking", phase="start", evidence=["ab" * 32], trace={"faces": 2, "distance": 0.71}
            ),
        )
    else:
        state = STATES[seq % len(STATES)]
        event = StateEvent(
            id=eid, seq=seq, ts=ts, payload=StatePayload(state=state, trace={"faces": 1, "distance": 0.41})
        )
    return encode(
        StreamEvent(
            tenant=tenant, agent_id=f"pc-{agent:04d}", session_id=f"s-{agent}", received_at=ts, event=event
        )
    )


async def fill(client: aioredis.Redis, tenant: str, n: int) -> float:
    """XADD n entries (pipelined pages, like the gateway's group commit); returns seconds taken."""
    t0 = time.perf_counter()
    stream = keys.events_stream(tenant)
    start = datetime.now(UTC) - timedelta(hours=1)
    done = 0
    while done < n:
        page = min(FILL_PAGE, n - done)
        async with client.pipeline(transaction=False) as pipe:
            for i in range(done, done + page):
                ts = start + timedelta(milliseconds=i)
                pipe.xadd(stream, {keys.ENTRY_FIELD: make_event(tenant, i % AGENTS, i // AGENTS + 1, ts)})
            await pipe.execute()
        done += page
        if done % 50_000 < FILL_PAGE:
            log.info("filled %d / %d entries", done, n)
    await client.sadd(keys.TENANTS, tenant)
    return time.perf_counter() - t0


async def consume(worker: StreamConsumer[PersistHandler], n: int, timeout_s: float) -> float:
    """Run the worker until it has stored n events; returns seconds from start to the last commit."""
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    deadline = t0 + timeout_s
    next_log = t0 + 5
    stored = worker.handler.stats
    while stored.inserted + stored.duplicates < n:
        if task.done():
            task.result()
            raise RuntimeError(f"worker stopped after storing {stored.inserted} of {n} events")
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"only {stored.inserted} of {n} events stored in {timeout_s} s")
        if now > next_log:
            log.info("stored %d / %d", stored.inserted, n)
            next_log = now + 5
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - t0
    stop.set()
    await asyncio.wait_for(task, 30)
    return elapsed


async def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="tw-bench-persist-"))
    embedded: EmbeddedRedis | None = None
    redis_url = args.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(work / "redis")
        redis_url = embedded.start()
    drop_db: str | None = None
    if args.db == "postgresql":
        drop_db = f"tw_bench_{uuid.uuid4().hex[:8]}"
        db_url = create_database(args.database_url, drop_db)
    else:
        db_url = sqlite_url(work)
    engine = make_engine(db_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        upgrade(engine)
        fill_s = await fill(client, tenant, args.events)
        log.info("stream filled in %.1f s; starting the worker", fill_s)
        settings = ServerSettings.model_validate(
            {
                "redis_url": redis_url,
                "database_url": db_url,
                "data_dir": work,
                "worker_name": "bench-w0",
                "worker_batch": args.batch,
                "tenant_refresh_s": 0.05,
            }
        )
        worker = persist_consumer(settings, engine, client)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        elapsed = await consume(worker, args.events, args.timeout)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        with engine.connect() as conn:
            stored = int(conn.execute(text("SELECT count(*) FROM event")).scalar_one())
        if stored != args.events:
            raise RuntimeError(f"expected {args.events} rows in the event table, found {stored}")
        return {
            "db": args.db,
            "events": args.events,
            "batch": args.batch,
            "fill_s": round(fill_s, 2),
            "persist_s": round(elapsed, 3),
            "events_per_s": round(args.events / elapsed, 1),
            "rows_stored": stored,
            "batches": worker.stats.batches,
            "dead_lettered": worker.stats.dead_lettered,
            "target_per_s": 20_000 if args.db == "postgresql" else 5_000,
            "worker_duplicates": worker.handler.stats.duplicates,
            "worker_claimed": worker.stats.claimed,
        }
    finally:
        await client.delete(keys.events_stream(tenant), keys.dead_letter_stream(tenant))
        await client.srem(keys.TENANTS, tenant)
        await client.aclose()
        engine.dispose()
        if drop_db:
            drop_database(args.database_url, drop_db)
        if embedded:
            embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="worker_batch (XREADGROUP COUNT)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--redis-url", default=os.environ.get("TELEWORK_BENCH_REDIS_URL"))
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TELEWORK_BENCH_DATABASE_URL"),
        help="PostgreSQL server URL; a fresh database is created on it and dropped at the end",
    )
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats of the timed part")
    args = parser.parse_args()
    if args.events < 1:
        parser.error(f"--events must be positive, got {args.events}")
    if args.db == "postgresql" and not args.database_url:
        parser.error("--db postgresql needs --database-url (or TELEWORK_BENCH_DATABASE_URL)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("workers").setLevel(logging.WARNING)
    result = asyncio.run(run(args))
    print_result(result)


if __name__ == "__main__":
    main()
