"""Offline agent benchmark: an hour of activity recorded offline (compressed in time), then reconnect.

The agent (in this process, with its real SQLite spool) records ``--hours`` of activity while
it has no session: a state change every 2-6 s with a realistic decision trace, a state event
every 5 s (heartbeat rate), an incident (start + end, with evidence) every ~10 minutes, task
changes, and ~19 evidence images per hour of ~130 KB (periodic and incident). Then it connects
to a real gateway and a real persistence worker (subprocesses: ``python -m telework gateway``
and ``worker``) and flushes. Measured: how long the flush takes until every offline event is
acked, until every event is in the database (exactly once), how long the images take to
upload at the default pace, and the agent's peak upstream bandwidth over 1 s windows.

    python benchmarks/agent_offline.py [--hours 1] [--database-url postgresql+psycopg://...]

Prints a table, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from bench_common import print_result, start_telework, stop_processes, wait_ready
from sqlalchemy import func, select
from sqlmodel import Session, col

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from agent.spool import Spool
from core.settings import sqlite_url
from realtime import keys
from realtime.embedded_redis import EmbeddedRedis, free_port
from realtime.protocol import IncidentPayload, PresenceState, StatePayload, TaskPayload
from storage.accounts import create_agent, create_tenant, create_user
from storage.activity import EventRecord
from storage.db import create_database, drop_database, make_engine, upgrade
from storage.evidence_models import EvidenceObject

log = logging.getLogger("benchmarks.agent_offline")
ROOT = Path(__file__).resolve().parent.parent
STATES: tuple[PresenceState, ...] = ("present", "present", "away", "present", "peeking")
IMAGES_PER_HOUR = 19  # periodic + incident evidence together
INCIDENTS_PER_HOUR = 6
IMAGE_BYTES = 130_000


def trace(rng: random.Random, t: float, state: str) -> dict[str, Any]:
    """A decision trace shaped like agent/detect's (rule, timings, one observation with faces)."""
    faces = [
        {
            "track": 1,
            "distance": round(rng.uniform(0.3, 0.5), 4),
            "height_px": 180,
            "rel_size": 1.0,
            "role": "user",
        }
    ]
    if state == "peeking":
        faces.append({"track": 2, "distance": 0.81, "height_px": 120, "rel_size": 0.667, "role": "other"})
    return {
        "from": "present",
        "to": state,
        "label": state,
        "rule": f"{state}_held",
        "held_s": round(rng.uniform(1, 3), 3),
        "required_s": 1.0,
        "since": round(t - 2, 3),
        "frames": 4,
        "min_frames": 2,
        "observation": {
            "t": round(t, 3),
            "label": state,
            "threshold": 0.442,
            "faces": faces,
            "luma_mean": 112.4,
            "luma_std": 48.2,
            "dark": False,
            "uniform": False,
        },
    }


def record_offline(session: AgentSession, hours: float, start: datetime, seed: int) -> dict[str, int]:
    """Emit ``hours`` of activity with simulated timestamps, as fast as the spool takes it."""
    rng = random.Random(seed)
    end_s = hours * 3600
    counts = {"events": 0, "images": 0}
    next_change, next_beat, next_incident, next_image, t = 0.0, 0.0, 600.0, 0.0, 0.0
    image_every = 3600 / (IMAGES_PER_HOUR - INCIDENTS_PER_HOUR)
    session.emit(TaskPayload(task="offline work"), ts=start)
    counts["events"] += 1
    while t < end_s:
        t = min(next_change, next_beat, next_incident, next_image)
        ts = start + timedelta(seconds=t)
        if t == next_change:
            state = rng.choice(STATES)
            session.emit(StatePayload(state=state, trace=trace(rng, t, state)), ts=ts)
            next_change += rng.uniform(2, 6)
        elif t == next_beat:
            session.emit(StatePayload(state="present"), ts=ts)
            next_beat += 5
        elif t == next_incident:
            sha = add_image(session, rng, "incident", ts)
            session.emit(IncidentPayload(kind="peeking", phase="start", evidence=[sha]), ts=ts)
            session.emit(IncidentPayload(kind="peeking", phase="end"), ts=ts + timedelta(seconds=8))
            counts["events"] += 1
            counts["images"] += 1
            next_incident += rng.uniform(0.8, 1.2) * 3600 / INCIDENTS_PER_HOUR
        else:
            add_image(session, rng, "periodic", ts)
            counts["images"] += 1
            next_image += image_every
            continue
        counts["events"] += 1
    return counts


def add_image(session: AgentSession, rng: random.Random, purpose: str, ts: datetime) -> str:
    data = rng.randbytes(rng.randint(IMAGE_BYTES - 5000, IMAGE_BYTES + 5000))  # incompressible, like a JPEG
    return session.add_evidence(data, "camera" if rng.random() < 0.5 else "screen", purpose, ts).sha256  # type: ignore[arg-type]


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


def db_counts(engine: Any, tenant: str) -> tuple[int, int, int]:
    """(event rows, distinct event ids, evidence objects) of the tenant."""
    with Session(engine) as s:
        rows, distinct = s.execute(
            select(func.count(), func.count(func.distinct(EventRecord.id))).where(
                col(EventRecord.tenant_id) == tenant
            )
        ).one()
        images = s.execute(
            select(func.count()).select_from(EvidenceObject).where(col(EvidenceObject.tenant_id) == tenant)
        ).scalar_one()
    return int(rows), int(distinct), int(images)


async def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="tw-offline-"))
    embedded: EmbeddedRedis | None = None
    redis_url = args.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(work / "redis")
        redis_url = embedded.start()
    drop_db: str | None = None
    if args.database_url and args.database_url.startswith("postgres"):
        drop_db = f"tw_bench_{uuid.uuid4().hex[:8]}"
        db_url, db_kind = create_database(args.database_url, drop_db), "postgresql"
    else:
        db_url, db_kind = args.database_url or sqlite_url(work), "sqlite"
    engine = make_engine(db_url)
    upgrade(engine)
    tenant = f"offline-{uuid.uuid4().hex[:6]}"
    create_tenant(engine, tenant, "Offline benchmark")
    create_user(engine, tenant, "alice", "Alice")
    token = create_agent(engine, tenant, "pc-offline", "alice")
    port = free_port()
    env = {
        **os.environ,
        "TELEWORK_REDIS_URL": redis_url,
        "TELEWORK_DATABASE_URL": db_url,
        "TELEWORK_DATA_DIR": str(work / "server"),
        "TELEWORK_GATEWAY_PORT": str(port),
        "TELEWORK_LOG_LEVEL": "WARNING",
        "TELEWORK_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "TELEWORK_WORKER_BLOCK_MS": "20",
        "TELEWORK_TENANT_REFRESH_S": "0.2",
    }
    procs = [
        start_telework(["gateway"], env, work / "gateway.log"),
        start_telework(["worker"], env, work / "worker.log"),
    ]
    spool = Spool.in_dir(work / "agent")
    session = AgentSession(
        f"ws://127.0.0.1:{port}/v1/agent", token, SessionOptions(), name="pc-offline", spool=spool
    )
    runner: asyncio.Task[None] | None = None
    try:
        t = time.monotonic()
        counts = record_offline(
            session, args.hours, datetime.now(UTC) - timedelta(hours=args.hours), args.seed
        )
        offline_s = time.monotonic() - t
        sent = session.last_seq
        kept, overwritten = spool.image_count(), spool.overwritten
        log.info("recorded %d events and %d images offline in %.1f s", sent, counts["images"], offline_s)
        backlog = sum(len(p.text) for p in spool.pending_events())
        await wait_ready(port)

        t0 = time.monotonic()
        runner = asyncio.create_task(session.run())
        await asyncio.wait_for(session.wait_acked(sent), 120)
        flush_s = time.monotonic() - t0
        await asyncio.wait_for(session.wait_acked(), 30)  # and the gap event queued on reconnect, if any
        gap_events = session.last_seq - sent
        sent = session.last_seq
        flush_peak = session.meter.peak_sent_kbps
        await poll(lambda: db_counts(engine, tenant)[0] >= sent, 120, "every event stored")
        stored_s = time.monotonic() - t0
        log.info("flushed %d events in %.2f s (stored in %.2f s); uploading images", sent, flush_s, stored_s)

        session.meter.reset_peak()
        t1, bytes0 = time.monotonic(), session.meter.total_sent
        if args.upload:
            await asyncio.wait_for(session.wait_uploaded(), 3600)
        upload_s = time.monotonic() - t1
        upload_bytes = session.meter.total_sent - bytes0
        rows, distinct, images_stored = db_counts(engine, tenant)
        client = aioredis.Redis.from_url(redis_url)
        try:
            stream_entries = int(await client.xlen(keys.events_stream(tenant)))
        finally:
            await client.aclose()
        return {
            "db": db_kind,
            "hours_offline": args.hours,
            "offline_record_s": round(offline_s, 2),
            "events_sent": sent,
            "events_stored": rows,
            "duplicates": rows - distinct,
            "stream_resends": stream_entries - sent,
            "backlog_kb": round(backlog / 1000, 1),
            "flush_s": round(flush_s, 3),
            "stored_s": round(stored_s, 3),
            "flush_peak_kbps": round(flush_peak, 1),
            "images_taken": counts["images"],
            "images_kept": kept,
            "images_overwritten": overwritten,
            "gap_events": gap_events,
            "images_uploaded": session.images_stored,
            "images_stored_server": images_stored,
            "upload_s": round(upload_s, 1),
            "upload_avg_kbps": round(upload_bytes * 8 / 1000 / upload_s, 1) if upload_s > 0 else 0.0,
            "peak_kbps": round(session.meter.peak_sent_kbps, 1),
            "day_150_images_mb": round(150 * IMAGE_BYTES / 1e6, 1),
        }
    finally:
        session.stop()
        if runner is not None:
            await asyncio.gather(runner, return_exceptions=True)
        spool.close()
        stop_processes(procs)
        engine.dispose()
        if drop_db:
            drop_database(args.database_url, drop_db)
        if embedded:
            embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="offline activity to record")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--no-upload", dest="upload", action="store_false", help="skip the paced image upload"
    )
    parser.add_argument("--redis-url", default=os.environ.get("TELEWORK_BENCH_REDIS_URL"))
    parser.add_argument("--database-url", default=os.environ.get("TELEWORK_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    if args.hours <= 0:
        parser.error("--hours must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("agent.client", "agent.spool", "agent.uploader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = asyncio.run(run(args))
    print_result(result)


if __name__ == "__main__":
    main()
