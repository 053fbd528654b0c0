"""The one stream consumer: every tenant's event stream, in a Redis consumer group, fed to a handler.

A loop steered by named exceptions (as arq's worker is by ``Retry``). The consumer
owns everything about the streams; a :class:`BatchHandler` only says what a batch
means (persistence: :mod:`workers.persist`; the builder: :mod:`workers.builder`).

The loop, one per process:

* discover tenants from ``SMEMBERS tw:tenants`` (every ``tenant_refresh_s``) and
  create the group on each stream (from ID 0, MKSTREAM, idempotent);
* at start, re-read this consumer's own pending entries (ID 0) and claim entries
  idle past ``claim_idle_ms`` from dead consumers (XAUTOCLAIM); claim again every
  ``claim_interval_s``; run each :class:`Periodic` hook when it is due (first at start);
* otherwise XREADGROUP ``>`` over every tenant stream, decode, hand the batch to the
  handler, and XACK only after the handler returned (it returns after its commit).
  The next batch is read while the handler works on this one; batches are handled
  and acked one after the other, in order;
* entries that do not decode, or were delivered more than ``max_deliveries``
  times, go to the tenant's dead-letter stream (then XACK) before the handler sees
  the batch; nothing is dropped.

What a handler (or a hook) may raise (the contract is :mod:`workers.handling`):

* :class:`RetryLater` - transient (the database is down): the same batch is handed
  over again after a capped exponential pause (0.5 s doubling to 10 s); its entries
  stay pending meanwhile. A stop request during the pause stops the consumer with
  the batch still pending (re-read at the next start).
* :class:`PoisonEntries` - these entries of the batch are poison: each goes to the
  dead-letter stream with its reason, then is acked; the rest of the batch was
  handled and is acked.
* :class:`StopConsumer` - stop cleanly now; the batch in hand stays pending.

Anything else is a defect: it ends :meth:`StreamConsumer.run` (the entries stay
pending, are claimed later, and are dead-lettered once over-delivered).

Stop: setting the stop event ends the loop after the batch in hand is handled and acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.settings import ServerSettings
from realtime import keys
from workers.dead_letter import DeadLetterReason, classify, dead_letter, send_dead_letters, text_of
from workers.handling import BatchHandler, Entry, Message, Periodic, PoisonEntries, RetryLater, StopConsumer

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

T = TypeVar("T")


@dataclass
class ConsumerStats:
    read: int = 0
    acked: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    batches: int = 0
    retries: int = 0


def next_delay(delay: float) -> float:
    """The pause after ``delay``: doubled, at most ``RETRY_MAX_S``."""
    return min(delay * 2, RETRY_MAX_S)


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


def sort_out(batch: Sequence[Entry], max_deliveries: int) -> tuple[list[Message], list[tuple[Entry, str]]]:
    """Split a batch into what the handler gets and what is dead-lettered at once (with the reason)."""
    good: list[Message] = []
    bad: list[tuple[Entry, str]] = []
    for entry in batch:
        decided = classify(entry.fields, entry.deliveries, max_deliveries)
        if isinstance(decided, DeadLetterReason):
            bad.append((entry, decided.reason))
        else:
            good.append(Message(entry, decided))
    return good, bad


H = TypeVar("H", bound=BatchHandler)


class StreamConsumer(Generic[H]):
    """Every tenant's event stream in ``group`` as consumer ``settings.worker_name``, fed to ``handler``."""

    def __init__(
        self,
        settings: ServerSettings,
        redis: Any,
        group: str,
        handler: H,
        hooks: Sequence[Periodic] = (),
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.group = group
        self.handler = handler
        self.hooks = tuple(hooks)
        self.name = settings.worker_name
        self.streams: list[str] = []
        self.stats = ConsumerStats()
        self._stop = asyncio.Event()
        self._progress_at = time.monotonic()
        self._progress_read = 0
        self._inflight: asyncio.Task[None] | None = None

    def _extra(self, **values: object) -> dict[str, object]:
        return {"worker": self.name, "group": self.group, **values}

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or a :class:`StopConsumer`); the batch in hand is finished first."""
        self._stop = stop
        log.info("consumer starting", extra=self._extra())
        next_refresh = next_claim = next_progress = 0.0
        next_hook = [0.0] * len(self.hooks)
        reconciled = False
        backoff = RETRY_FIRST_S
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    await self.refresh_tenants()
                    next_refresh = now + self.settings.tenant_refresh_s
                if not reconciled:
                    await self.settle()
                    await self.reconcile()
                    reconciled = True
                if now >= next_claim:
                    await self.settle()
                    await self.claim_idle()
                    next_claim = now + self.settings.claim_interval_s
                for index, hook in enumerate(self.hooks):
                    if now >= next_hook[index]:
                        await self.settle()  # a hook never runs beside a batch
                        await self._retrying(hook.run, hook.name)
                        next_hook[index] = time.monotonic() + hook.every_s
                if now >= next_progress and self.stats.read != self._progress_read:
                    self._log_progress()
                    next_progress = now + PROGRESS_EVERY_S
                if not self.streams:
                    await self._pause(min(self.settings.tenant_refresh_s, next_claim - now))
                    continue
                await self.read_new()
                backoff = RETRY_FIRST_S
            except StopConsumer as exc:
                log.info("consumer asked to stop", extra=self._extra(reason=str(exc)))
                break
            except ResponseError as exc:
                if str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    # A stream (and its group) was deleted under us: create the groups afresh.
                    log.warning(
                        "stream or consumer group vanished; recreating", extra=self._extra(error=str(exc))
                    )
                    self.streams = []
                    next_refresh = 0.0
                    continue
                log.error(
                    "redis refused a command; retrying", extra=self._extra(error=str(exc), retry_in_s=backoff)
                )
                await self._pause(backoff)
                backoff = next_delay(backoff)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning(
                    "redis unavailable; retrying", extra=self._extra(error=str(exc), retry_in_s=backoff)
                )
                await self._pause(backoff)
                backoff = next_delay(backoff)
        with contextlib.suppress(StopConsumer):
            await self.settle()
        log.info("consumer stopped", extra=self._extra(**asdict(self.stats), **self.handler.counts()))

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once when stop is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0.001))

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()``; on :class:`RetryLater` call again after a capped exponential pause, until stop."""
        backoff = RETRY_FIRST_S
        while True:
            try:
                return await call()
            except RetryLater as exc:
                self.stats.retries += 1
                log.error(
                    "handler must retry later",
                    extra=self._extra(call=what, error=str(exc), retry_in_s=backoff),
                )
                if not self._stop.is_set():
                    await self._pause(backoff)
                if self._stop.is_set():
                    log.warning("stopping with an unfinished %s; it stays pending", what, extra=self._extra())
                    raise StopConsumer(f"stop requested while {what} had to retry") from exc
                backoff = next_delay(backoff)

    def _log_progress(self) -> None:
        """Totals so far and the rate since the previous progress line."""
        now = time.monotonic()
        elapsed = max(now - self._progress_at, 1e-9)
        log.info(
            "consumer progress",
            extra=self._extra(
                streams=len(self.streams),
                per_s=round((self.stats.read - self._progress_read) / elapsed, 1),
                **asdict(self.stats),
                **self.handler.counts(),
            ),
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
            log.info("consuming tenant stream", extra=self._extra(stream=stream))

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
            Entry(stream, text_of(entry_id), fields or {}, 1)
            for stream, entries in stream_entries(response)
            for entry_id, fields in entries
        ]
        # Overlap: this batch was read while the previous one was being handled; finish that one
        # (commit, then XACK) before this one starts, so entries are acked in order.
        await self.settle()
        if batch:
            self._inflight = asyncio.create_task(self.process(batch), name=f"{self.group}-{self.name}")

    async def settle(self) -> None:
        """Wait for the batch being handled, if any (its errors surface here)."""
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
                        Entry(stream, i, fields or {}, counts.get(i, 1))
                        for i, (_, fields) in zip(ids, entries, strict=True)
                    ]
                )
                cursor = ids[-1]
                log.info("reconciled own pending entries", extra=self._extra(stream=stream, entries=len(ids)))

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
                        extra=self._extra(stream=stream, claimed=len(claimed), deleted=len(deleted)),
                    )
                    batch = [Entry(stream, i, f, counts.get(i, 1)) for i, f in claimed]
                    batch += [Entry(stream, i, {}, 0) for i in deleted]
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
        """Dead-letter what cannot be handled, hand the rest over, XACK it after the handler returned."""
        if not batch:
            return
        self.stats.read += len(batch)
        self.stats.batches += 1
        good, bad = sort_out(batch, self.settings.max_deliveries)
        poison: dict[str, str] = {}
        if good:
            poison = await self._retrying(lambda: self._handle(good), "batch")
        handled = [m.entry for m in good if m.entry.entry_id not in poison]
        await self.ack(handled)
        self.stats.acked += len(handled)
        bad += [(m.entry, poison[m.entry.entry_id]) for m in good if m.entry.entry_id in poison]
        now = utcnow()
        letters = [dead_letter(e.stream, e.entry_id, e.fields, why, e.deliveries, now) for e, why in bad]
        self.stats.dead_lettered += await send_dead_letters(self.redis, self.group, letters)

    async def _handle(self, batch: Sequence[Message]) -> dict[str, str]:
        """The handler's verdict: the poison entries with their reasons (none: all handled)."""
        try:
            await self.handler.handle(batch)
        except PoisonEntries as exc:
            return exc.reasons
        return {}

    async def ack(self, entries: Sequence[Entry]) -> None:
        """XACK handled entries, one XACK per stream."""
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
