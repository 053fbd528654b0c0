"""End-to-end pipeline benchmark: N real WebSocket agent sessions -> gateway -> Redis -> workers -> DB.

Starts a real gateway and real workers as subprocesses (``python -m telework ...``),
holds N agent sessions (heartbeats every 5 s) in this process, sends events at a
fixed total rate, and measures acks, persistence, event -> live-state latency
(from the frame leaving the agent to the LiveState carrying its last event id
arriving on the tenant's pub/sub channel) and event -> stored latency (from the frame
leaving the agent to the ``stored`` watermark covering it: the events are committed in
the database and the agent may free its spool).

    python benchmarks/pipeline.py --agents 1000 --seconds 30 \
        --database-url postgresql+psycopg://root@127.0.0.1:5432/test

Prints a table, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import redis.asyncio as aioredis
import websockets
from bench_common import print_result, start_telework, stop_processes, wait_ready
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import sqlite_url
from realtime import keys
from realtime.embedded_redis import EmbeddedRedis, free_port
from realtime.protocol import (
    PROTOCOL_VERSION,
    Heartbeat,
    Hello,
    encode,
    new_event_id,
)
from storage.accounts import create_agent, create_tenant
from storage.activity import EventRecord
from storage.db import create_database, drop_database, make_engine, upgrade

log = logging.getLogger("benchmarks.pipeline")
ROOT = Path(__file__).resolve().parent.parent
STATES = ("present", "away", "present", "peeking", "present")


@dataclass
class Stats:
    sent: int = 0
    acked: int = 0
    sessions_open: int = 0
    sessions_lost: int = 0
    errors: int = 0
    frame_sent_at: dict[str, float] = field(default_factory=dict)  # last event id -> send time
    latencies_ms: list[float] = field(default_factory=list)
    stored_latencies_ms: list[float] = field(default_factory=list)
    stored: int = 0
    measuring: bool = False


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


async def all_acked(done: Callable[[], bool]) -> None:
    while not done():  # noqa: ASYNC110 - the reader task moves the counter
        await asyncio.sleep(0.05)


async def agent(
    url: str, token: str, per_agent_rate: float, interval: float, stats: Stats, stop: asyncio.Event
) -> None:
    """One agent session: hello, heartbeats, batches of state events every ``interval``."""
    # open_timeout: 1000 sessions open while the first ones already send (an agent would retry)
    async with websockets.connect(url, max_size=2**20, ping_interval=None, open_timeout=60) as ws:
        await ws.send(encode(Hello(token=token, agent_version="bench", protocol=PROTOCOL_VERSION)))
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {welcome}")
        stats.sessions_open += 1
        seq = 0
        acked_seq = 0
        stored_seq = 0
        in_flight: deque[tuple[int, float]] = deque()  # (highest seq of a measured frame, sent at)

        async def reader() -> None:
            nonlocal acked_seq, stored_seq
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    stats.acked += frame["seq"] - acked_seq
                    acked_seq = frame["seq"]
                elif frame["type"] == "stored":
                    now = time.monotonic()
                    stats.stored += frame["seq"] - stored_seq
                    stored_seq = frame["seq"]
                    while in_flight and in_flight[0][0] <= stored_seq:
                        stats.stored_latencies_ms.append((now - in_flight.popleft()[1]) * 1000)
                elif frame["type"] == "error":
                    stats.errors += 1

        read_task = asyncio.create_task(reader())
        carry = random.random()
        next_beat = time.monotonic() + 5.0
        await asyncio.sleep(random.random() * interval)
        try:
            while not stop.is_set():
                carry += per_agent_rate * interval
                count = int(carry)
                carry -= count
                if count:
                    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                    ids = [str(new_event_id()) for _ in range(count)]
                    raw = events_frame(ids, seq + 1, ts)
                    seq += count
                    if stats.measuring:
                        stats.frame_sent_at[ids[-1]] = time.monotonic()
                        in_flight.append((seq, time.monotonic()))
                    await ws.send(raw)
                    stats.sent += count
                if time.monotonic() >= next_beat:
                    await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
                    next_beat += 5.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
            # Drain: wait for the last `stored` (or the reader ending with the connection).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_acked(lambda: stored_seq >= seq), 30)
        finally:
            read_task.cancel()
            stats.sessions_open -= 1


EVENT_JSON = '{"id":"%s","seq":%d,"ts":"%s","type":"state","payload":{"state":"%s"}}'


def events_frame(ids: list[str], first_seq: int, ts: str) -> str:
    """An ``events`` frame of state events, formatted directly: the load generator shares the
    machine with the servers it measures, so it spends as little CPU per event as it can
    (``test_benchmark_frames_are_valid_protocol`` checks it against the protocol)."""
    events = ",".join(
        EVENT_JSON % (event_id, first_seq + i, ts, STATES[(first_seq + i) % len(STATES)])
        for i, event_id in enumerate(ids)
    )
    return '{"type":"events","events":[' + events + "]}"


async def watch_live(redis_url: str, tenant: str, stats: Stats, ready: asyncio.Event) -> None:
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.live_channel(tenant))
    ready.set()
    try:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            now = time.monotonic()
            event_id = json.loads(message["data"]).get("last_event_id")
            sent = stats.frame_sent_at.pop(event_id, None) if event_id else None
            if sent is not None:
                stats.latencies_ms.append((now - sent) * 1000)
    finally:
        await pubsub.aclose()
        await client.aclose()


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def count_events(engine: Engine, tenant: str) -> int:
    with Session(engine) as s:
        return int(
            s.execute(
                select(func.count()).select_from(EventRecord).where(col(EventRecord.tenant_id) == tenant)
            ).scalar_one()
        )


async def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    embedded: EmbeddedRedis | None = None
    redis_url = args.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(work / "redis")
        redis_url = embedded.start()
    drop_db: str | None = None
    if args.database_url and args.database_url.startswith(("postgres", "postgresql")):
        drop_db = f"tw_bench_{uuid.uuid4().hex[:8]}"
        db_url = create_database(args.database_url, drop_db)
        db_kind = "postgresql"
    else:
        db_url = args.database_url or sqlite_url(work)
        db_kind = "sqlite"
    engine = make_engine(db_url)
    upgrade(engine)
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    create_tenant(engine, tenant, "Benchmark")
    log.info("creating %d agent tokens", args.agents)
    tokens = [create_agent(engine, tenant, f"{tenant}-a{i:05d}") for i in range(args.agents)]

    port = free_port()
    env = {
        **os.environ,
        "TELEWORK_REDIS_URL": redis_url,
        "TELEWORK_DATABASE_URL": db_url,
        "TELEWORK_DATA_DIR": str(work),
        "TELEWORK_GATEWAY_PORT": str(port),
        "TELEWORK_LOG_LEVEL": "WARNING",
    }
    procs = [start_telework(["gateway"], env, work / "gateway.log")]
    for i in range(args.workers):
        procs.append(
            start_telework(
                ["worker"], {**env, "TELEWORK_WORKER_NAME": f"bench-w{i}"}, work / f"worker{i}.log"
            )
        )
    stats = Stats()
    stop = asyncio.Event()
    try:
        await wait_ready(port)
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_live(redis_url, tenant, stats, ready))
        await ready.wait()
        url = f"ws://127.0.0.1:{port}/v1/agent"
        per_agent = args.rate / args.agents
        tasks: list[asyncio.Task[None]] = []
        t_connect = time.monotonic()
        for i, token in enumerate(tokens):
            tasks.append(asyncio.create_task(agent(url, token, per_agent, args.interval, stats, stop)))
            if i % args.ramp_step == args.ramp_step - 1:
                await asyncio.sleep(0.1)
        while stats.sessions_open < args.agents:
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                raise RuntimeError(f"{len(failed)} sessions failed: {failed[0].exception()!r}")
            if time.monotonic() - t_connect > 120:
                raise TimeoutError(f"only {stats.sessions_open}/{args.agents} sessions opened in 120 s")
            await asyncio.sleep(0.1)
        connect_s = time.monotonic() - t_connect
        log.info("%d sessions open in %.1f s; warming up", args.agents, connect_s)
        await asyncio.sleep(min(5.0, args.seconds / 4))

        stats.measuring = True
        acked0, persisted0, t0 = stats.acked, count_events(engine, tenant), time.monotonic()
        rss_samples: list[float] = []
        gateway = psutil.Process(procs[0].pid)
        watched = {
            "gateway": [gateway],
            "workers": [psutil.Process(p.pid) for p in procs[1:]],
            "load_generator": [psutil.Process()],
        }
        cpu0 = {name: sum(cpu_s(p) for p in ps) for name, ps in watched.items()}
        for second in range(int(args.seconds)):
            await asyncio.sleep(1.0)
            rss_samples.append(gateway.memory_info().rss / 2**20)
            if second % 5 == 4:
                log.info("t=%ds acked=%d sessions=%d", second + 1, stats.acked - acked0, stats.sessions_open)
        elapsed = time.monotonic() - t0
        cpu_pct = {
            name: round((sum(cpu_s(p) for p in ps) - cpu0[name]) / elapsed * 100, 1)
            for name, ps in watched.items()
        }
        acked1, persisted1 = stats.acked, count_events(engine, tenant)
        stats.measuring = False
        held = stats.sessions_open

        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        drain_deadline = time.monotonic() + 120
        total = count_events(engine, tenant)
        while total < stats.sent and time.monotonic() < drain_deadline:
            await asyncio.sleep(0.5)
            total = count_events(engine, tenant)
        watcher.cancel()
        lat = stats.latencies_ms
        return {
            "db": db_kind,
            "agents": args.agents,
            "agents_held": held,
            "connect_s": round(connect_s, 2),
            "offered_per_s": args.rate,
            "acked_per_s": round((acked1 - acked0) / elapsed, 1),
            "persisted_per_s": round((persisted1 - persisted0) / elapsed, 1),
            "p50_event_to_state_ms": round(percentile(lat, 50), 1),
            "p99_event_to_state_ms": round(percentile(lat, 99), 1),
            "latency_samples": len(lat),
            "p50_event_to_stored_ms": round(percentile(stats.stored_latencies_ms, 50), 1),
            "p99_event_to_stored_ms": round(percentile(stats.stored_latencies_ms, 99), 1),
            "stored_samples": len(stats.stored_latencies_ms),
            "stored_watermark_events": stats.stored,
            "gateway_rss_mb": round(max(rss_samples), 1),
            "gateway_cpu_pct_of_core": cpu_pct["gateway"],
            "workers_cpu_pct_of_core": cpu_pct["workers"],
            "load_generator_cpu_pct_of_core": cpu_pct["load_generator"],
            "events_sent": stats.sent,
            "events_stored": total,
            "error_frames": stats.errors,
        }
    finally:
        stop.set()
        stop_processes(procs)
        engine.dispose()
        if drop_db:
            drop_database(args.database_url, drop_db)
        if embedded:
            embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=5000, help="total events/s offered by all agents")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between an agent's batches")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ramp-step", type=int, default=20, help="sessions opened per 100 ms")
    parser.add_argument("--redis-url", default=os.environ.get("TELEWORK_BENCH_REDIS_URL"))
    parser.add_argument("--database-url", default=os.environ.get("TELEWORK_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    if args.agents < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error("--agents, --seconds and --rate must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        import uvloop  # the load generator should cost as little CPU as the agents it stands for

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print_result(result)


if __name__ == "__main__":
    main()
