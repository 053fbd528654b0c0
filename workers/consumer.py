"""The persistence worker: tenant event streams -> database, in a Redis consumer group.

One loop per process, no background tasks:

* discover tenants from ``SMEMBERS tw:tenants`` (every ``tenant_refresh_s``) and
  create the ``persist`` group on each stream (from ID 0, MKSTREAM, idempotent);
* at start, re-read this consumer's own pending entries (ID 0) and claim
  entries idle past ``claim_idle_ms`` from dead consumers (XAUTOCLAIM); claim
  again every ``claim_interval_s``;
* otherwise XREADGROUP ``>`` over every tenant stream, decode, persist the batch
  in one transaction (in a thread), and XACK only after the commit;
* entries that do not decode, or were delivered more than ``max_deliveries``
  times, go to the tenant's dead-letter stream (then XACK); nothing is dropped.

Several workers share the group (distinct ``worker_name``); the event id is the
primary key, so an entry processed twice (claimed after a crash) is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from core.settings import ServerSettings
from realtime import keys
from realtime.protocol import StreamEvent
from workers.dead_letter import DeadLetterReason, classify, dead_letter, send_dead_letters, text_of
from workers.persist import copy_batch, persist_batch, to_row

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

# (stream, entry id, raw fields, deliveries)
Entry = tuple[str, str, Any, int]


class Stopped(Exception):
    """The stop event was set while a batch could not be committed; it stays pending."""


@dataclass
class WorkerStats:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    batches: int = 0


def utcnow() -> datetime:
    return datetime.now(UTC)


def stream_entries(response: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """XREADGROUP reply (RESP2 list or RESP3 dict) as ``[(stream, [(id, fields), ...])]``."""
    if not response:
        return []
    items = response.items() if isinstance(response, dict) else response
    out = []
    for stream, entries in items:
        if len(entries) == 1 and isinstance(entries[0], list):
            entries = entries[0]  # RESP3: {stream: [[(id, fields), ...]]}
        out.append((text_of(stream), list(entries)))
    return out


class PersistWorker:
    """Consumes every tenant's event stream in group ``persist`` as consumer ``settings.worker_name``."""

    def __init__(self, settings: ServerSettings, engine: Engine, redis: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.name = settings.worker_name
        self.group = keys.PERSIST_GROUP
        self.streams: list[str] = []
        self.stats = WorkerStats()
        self._stop = asyncio.Event()
        self._progress_at = time.monotonic()
        self._progress_read = 0
        self._inflight: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished (committed and acked) first."""
        self._stop = stop
        log.info("persist worker starting", extra={"worker": self.name, "group": self.group})
        next_refresh = next_claim = next_progress = 0.0
        reconciled = False
        backoff = RETRY_FIRST_S
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    await self.refresh_tenants()
                    next_refresh = now + self.settings.tenant_refresh_s
                if not reconciled:
                    await self.reconcile()
                    reconciled = True
                if now >= next_claim:
                    await self.claim_idle()
                    next_claim = now + self.settings.claim_interval_s
                if now >= next_progress and self.stats.read != self._progress_read:
                    self._log_progress()
                    next_progress = now + PROGRESS_EVERY_S
                if not self.streams:
                    await self._pause(min(self.settings.tenant_refresh_s, next_claim - now))
                    continue
                await self.read_new()
                backoff = RETRY_FIRST_S
            except Stopped:
                break
            except ResponseError as exc:
                if str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    # A stream (and its group) was deleted under us: create the groups afresh.
                    log.warning(
                        "stream or consumer group vanished; recreating",
                        extra={"worker": self.name, "error": str(exc)},
                    )
                    self.streams = []
                    next_refresh = 0.0
                    continue
                log.error(
                    "redis refused a command; retrying",
                    extra={"worker": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning(
                    "redis unavailable; retrying",
                    extra={"worker": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
        with contextlib.suppress(Stopped):
            await self.settle()
        log.info("persist worker stopped", extra={"worker": self.name, **asdict(self.stats)})

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once when stop is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0.001))

    def _log_progress(self) -> None:
        """Totals so far and the rate since the previous progress line."""
        now = time.monotonic()
        elapsed = max(now - self._progress_at, 1e-9)
        log.info(
            "persist progress",
            extra={
                "worker": self.name,
                "streams": len(self.streams),
                "per_s": round((self.stats.read - self._progress_read) / elapsed, 1),
                **asdict(self.stats),
            },
        )
        self._progress_at, self._progress_read = now, self.stats.read

    # ------------------------------------------------------------- streams

    async def refresh_tenants(self) -> None:
        """Pick up tenants that produced events since the last look; create the group on their streams."""
        tenants = sorted(text_of(t) for t in await self.redis.smembers(keys.TENANTS))
        known = set(self.streams)
        for tenant in tenants:
            stream = keys.events_stream(tenant)
            if stream in known:
                continue
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.streams.append(stream)
            log.info("consuming tenant stream", extra={"worker": self.name, "stream": stream})

    async def read_new(self) -> None:
        """One XREADGROUP ``>`` over all tenant streams; process what arrived."""
        response = await self.redis.xreadgroup(
            self.group,
            self.name,
            dict.fromkeys(self.streams, ">"),
            count=self.settings.worker_batch,
            block=self.settings.worker_block_ms,
        )
        batch = [
            (stream, text_of(entry_id), fields or {}, 1)
            for stream, entries in stream_entries(response)
            for entry_id, fields in entries
        ]
        # Overlap: this batch was read while the previous one was committing; finish that one
        # (commit, then XACK) before this one starts, so entries are acked in order.
        await self.settle()
        if batch:
            self._inflight = asyncio.create_task(self.process(batch), name=f"persist-{self.name}")

    async def settle(self) -> None:
        """Wait for the batch being committed, if any (its errors surface here)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def reconcile(self) -> None:
        """Finish what a previous run under this consumer name left pending (history read from ID 0)."""
        for stream in list(self.streams):
            cursor = "0"
            while True:
                response = await self.redis.xreadgroup(
                    self.group, self.name, {stream: cursor}, count=self.settings.worker_batch
                )
                entries = [e for _, found in stream_entries(response) for e in found]
                if not entries:
                    break
                ids = [text_of(entry_id) for entry_id, _ in entries]
                counts = await self.delivery_counts(stream, ids)
                await self.process(
                    [
                        (stream, i, fields or {}, counts.get(i, 1))
                        for i, (_, fields) in zip(ids, entries, strict=True)
                    ]
                )
                cursor = ids[-1]
                log.info(
                    "reconciled own pending entries",
                    extra={"worker": self.name, "stream": stream, "entries": len(ids)},
                )

    async def claim_idle(self) -> None:
        """XAUTOCLAIM entries idle past ``claim_idle_ms`` (dead or stuck consumers) and process them."""
        for stream in list(self.streams):
            cursor = "0-0"
            while True:
                reply = await self.redis.xautoclaim(
                    stream,
                    self.group,
                    self.name,
                    min_idle_time=self.settings.claim_idle_ms,
                    start_id=cursor,
                    count=self.settings.worker_batch,
                )
                cursor = text_of(reply[0])
                claimed = [(text_of(i), fields or {}) for i, fields in reply[1] if i is not None]
                deleted = [text_of(i) for i in reply[2]] if len(reply) > 2 else []
                if claimed or deleted:
                    counts = await self.delivery_counts(stream, [i for i, _ in claimed])
                    self.stats.claimed += len(claimed) + len(deleted)
                    log.info(
                        "claimed idle entries",
                        extra={
                            "worker": self.name,
                            "stream": stream,
                            "claimed": len(claimed),
                            "deleted": len(deleted),
                        },
                    )
                    batch = [(stream, i, f, counts.get(i, 1)) for i, f in claimed]
                    batch += [(stream, i, {}, 0) for i in deleted]
                    await self.process(batch)
                if cursor in ("0-0", "0"):
                    break

    async def delivery_counts(self, stream: str, ids: Sequence[str]) -> dict[str, int]:
        """How many times each pending entry has been delivered (XPENDING, one per id, pipelined)."""
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        counts: dict[str, int] = {}
        for reply in replies:
            for item in reply:
                counts[text_of(item["message_id"])] = int(item["times_delivered"])
        return counts

    # ----------------------------------------------------------- processing

    async def process(self, batch: Sequence[Entry]) -> None:
        """Persist the good entries in one transaction, XACK them after the commit, dead-letter the rest."""
        if not batch:
            return
        self.stats.read += len(batch)
        self.stats.batches += 1
        good: list[tuple[Entry, StreamEvent]] = []
        bad: list[tuple[Entry, str]] = []
        for entry in batch:
            _, _, fields, deliveries = entry
            decided = classify(fields, deliveries, self.settings.max_deliveries)
            if isinstance(decided, DeadLetterReason):
                bad.append((entry, decided.reason))
            else:
                good.append((entry, decided))
        stored, rejected = await self.store(good)
        await self.ack(stored)
        now = utcnow()
        letters = [dead_letter(s, i, f, reason, d, now) for (s, i, f, d), reason in bad + rejected]
        self.stats.dead_lettered += await send_dead_letters(self.redis, self.group, letters)

    async def store(
        self, good: Sequence[tuple[Entry, StreamEvent]]
    ) -> tuple[list[Entry], list[tuple[Entry, str]]]:
        """Commit the rows in one transaction; returns (stored, rejected by the database with the reason)."""
        if not good:
            return [], []
        now = utcnow()
        try:
            if self.engine.dialect.name == "postgresql":
                inserted = await self._commit(partial(copy_batch, self.engine, [e for _, e in good], now))
            else:
                inserted = await self._commit(
                    partial(persist_batch, self.engine, [to_row(e, now) for _, e in good])
                )
        except (DataError, IntegrityError) as exc:
            rows = [to_row(event, now) for _, event in good]
            log.warning(
                "database rejected the batch; storing one by one",
                extra={"worker": self.name, "error": str(exc.orig), "rows": len(rows)},
            )
            return await self._store_one_by_one(good, rows)
        self.stats.inserted += inserted
        self.stats.duplicates += len(good) - inserted
        return [entry for entry, _ in good], []

    async def _store_one_by_one(
        self, good: Sequence[tuple[Entry, StreamEvent]], rows: list[dict[str, Any]]
    ) -> tuple[list[Entry], list[tuple[Entry, str]]]:
        stored: list[Entry] = []
        rejected: list[tuple[Entry, str]] = []
        for (entry, _), row in zip(good, rows, strict=True):
            try:
                inserted = await self._commit(partial(persist_batch, self.engine, [row]))
            except (DataError, IntegrityError) as exc:
                rejected.append((entry, f"database rejected the event: {str(exc.orig).strip()}"))
                continue
            self.stats.inserted += inserted
            self.stats.duplicates += 1 - inserted
            stored.append(entry)
        return stored, rejected

    async def _commit(self, write: Callable[[], int]) -> int:
        """``write`` (one transaction) in a thread; transient database errors are retried until stop."""
        backoff = RETRY_FIRST_S
        while True:
            try:
                return await asyncio.to_thread(write)
            except (DataError, IntegrityError):
                raise
            except SQLAlchemyError as exc:
                log.error(
                    "database write failed; retrying",
                    extra={"worker": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                if self._stop.is_set():
                    raise Stopped from exc
                await self._pause(backoff)
                if self._stop.is_set():
                    log.warning(
                        "stopping with an uncommitted batch; it stays pending",
                        extra={"worker": self.name},
                    )
                    raise Stopped from exc
                backoff = min(backoff * 2, RETRY_MAX_S)

    async def ack(self, entries: Sequence[Entry]) -> None:
        """XACK committed entries, one XACK per stream."""
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
