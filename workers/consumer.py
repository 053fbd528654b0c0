"""The one stream consumer: every tenant's event stream, in a Redis consumer group, fed to a handler.

A loop steered by named exceptions (as arq's worker is by ``Retry``). The consumer
owns everything about the streams; a :class:`BatchHandler` only says what a batch
means (persistence: :mod:`workers.persist`; the builder: :mod:`workers.builder`).

The loop, one per process:

* discover tenants from ``SMEMBERS tw:tenants`` (every ``tenant_refresh_s``) and
  create the group on each stream (from ID 0, MKSTREAM, idempotent);
* its name: ``worker_name``, else ``{hostname}-{group}-{slot}`` from a slot lock held
  while it runs (:mod:`workers.consumer_names`), so a restarted worker has the same name;
* at start, re-read this consumer's own pending entries (ID 0) at once, and claim entries
  idle past ``claim_idle_ms`` from dead consumers (XAUTOCLAIM); claim again every
  ``claim_interval_s``, first deleting the group's consumers idle past ``stale_consumer_s``
  with nothing pending (XGROUP DELCONSUMER; one with pending entries is claimed first and
  deleted on a later pass); run each :class:`Periodic` hook when it is due (first at start);
* otherwise XREADGROUP ``>`` over every tenant stream, decode, hand the batch to the
  handler, and XACK only after the handler returned (it returns after its commit).
  The next batch is read while the handler works on this one; batches are handled
  and acked one after the other, in order;
* entries that do not decode go to the tenant's dead-letter stream (then XACK) before
  the handler sees the batch; entries delivered more than ``max_deliveries`` times are
  handed over alone, one per handler call, and dead-lettered unhandled only past twice
  that (:mod:`workers.isolation`); nothing is dropped.

What a handler (or a hook) may raise (the contract is :mod:`workers.handling`):

* :class:`RetryLater` - transient (the database is down): the same batch is handed
  over again after a capped exponential pause (0.5 s doubling to 10 s); its entries
  stay pending meanwhile. A stop request during the pause stops the consumer with
  the batch still pending (re-read at the next start).
* :class:`PoisonEntries` - these entries of the batch are poison: each goes to the
  dead-letter stream with its reason, then is acked; the rest of the batch was
  handled and is acked.
* :class:`StopConsumer` - stop cleanly now; the batch in hand stays pending.

Anything else means an entry of the batch breaks the handler: the batch is split in
halves handed over again, down to single entries; only an entry that fails alone goes
to the dead-letter stream, its reason the exception's type and message; the others are
handled and acked, and the consumer goes on. (A Redis connection error from a handler
counts as :class:`RetryLater`.)

Stop: setting the stop event ends the loop after the batch in hand is handled and acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
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
from workers import consumer_group as groups
from workers.consumer_names import ConsumerSlot, take_slot
from workers.dead_letter import dead_letter, send_dead_letters, text_of
from workers.handling import (
    BatchHandler,
    Entry,
    EntryKey,
    Message,
    Periodic,
    PoisonEntries,
    RetryLater,
    StopConsumer,
)
from workers.isolation import describe, failed_alone, halves, sort_out

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
    alone: int = 0  # over-delivered entries handed over one per handler call
    bisections: int = 0  # batches split to find the entry that breaks the handler
    stale_deleted: int = 0  # stale consumers of the group deleted


def next_delay(delay: float) -> float:
    """The pause after ``delay``: doubled, at most ``RETRY_MAX_S``."""
    return min(delay * 2, RETRY_MAX_S)


def utcnow() -> datetime:
    return datetime.now(UTC)


H = TypeVar("H", bound=BatchHandler)


class StreamConsumer(Generic[H]):
    """Every tenant's event stream in ``group`` as consumer :attr:`name`, fed to ``handler``.

    :attr:`name` is ``settings.worker_name``, or, unset, taken from a free slot when :meth:`run`
    starts (:func:`workers.consumer_names.take_slot`) and held until it returns.
    """

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
        self.name = settings.worker_name or ""
        self._slot: ConsumerSlot | None = None
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
        if not self.settings.worker_name:
            self._slot = take_slot(self.settings.data_dir, self.group, socket.gethostname())
            self.name = self._slot.name
        try:
            await self._run(stop)
        finally:
            if self._slot is not None:
                self._slot.release()
                self._slot = None

    async def _run(self, stop: asyncio.Event) -> None:
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
            await groups.create_group(self.redis, stream, self.group)
            self.streams.append(stream)
            log.info("consuming tenant stream", extra=self._extra(stream=stream))

    async def read_new(self) -> None:
        """One XREADGROUP ``>`` over all tenant streams; process what arrived."""
        batch = await groups.read_new(
            self.redis,
            self.group,
            self.name,
            self.streams,
            self.settings.worker_batch,
            self.settings.worker_block_ms,
        )
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
                batch = await groups.read_own_pending(
                    self.redis, self.group, self.name, stream, cursor, self.settings.worker_batch
                )
                if not batch:
                    break
                await self.process(batch)
                cursor = batch[-1].entry_id
                log.info(
                    "reconciled own pending entries", extra=self._extra(stream=stream, entries=len(batch))
                )

    async def claim_idle(self) -> None:
        """Delete stale consumers, then XAUTOCLAIM entries idle past ``claim_idle_ms`` and process them."""
        for stream in list(self.streams):
            stale_ms = self.settings.stale_consumer_s * 1000
            for name in await groups.delete_stale(self.redis, stream, self.group, self.name, stale_ms):
                self.stats.stale_deleted += 1
                log.info("deleted a stale consumer", extra=self._extra(stream=stream, consumer=name))
            cursor = "0-0"
            while True:
                cursor, batch = await groups.autoclaim(
                    self.redis,
                    self.group,
                    self.name,
                    stream,
                    self.settings.claim_idle_ms,
                    cursor,
                    self.settings.worker_batch,
                )
                if batch:
                    self.stats.claimed += len(batch)
                    log.info("claimed idle entries", extra=self._extra(stream=stream, claimed=len(batch)))
                    await self.process(batch)
                if cursor in ("0-0", "0"):
                    break

    # ----------------------------------------------------------- processing

    async def process(self, batch: Sequence[Entry]) -> None:
        """Dead-letter what cannot be handled, hand the rest over, XACK it after the handler returned.

        Entries within the delivery limit go over together, over-delivered ones one by one
        (:func:`workers.isolation.sort_out`); a batch the handler fails on is bisected.
        """
        if not batch:
            return
        self.stats.read += len(batch)
        self.stats.batches += 1
        plan = sort_out(batch, self.settings.max_deliveries)
        poison: dict[EntryKey, str] = {}
        if plan.together:
            poison.update(await self._isolating(plan.together))
        for message in plan.alone:
            self.stats.alone += 1
            poison.update(await self._isolating([message]))
        given = [*plan.together, *plan.alone]
        handled = [m.entry for m in given if m.entry.key not in poison]
        await self.ack(handled)
        self.stats.acked += len(handled)
        bad = plan.dead + [(m.entry, poison[m.entry.key]) for m in given if m.entry.key in poison]
        now = utcnow()
        letters = [dead_letter(e.stream, e.entry_id, e.fields, why, e.deliveries, now) for e, why in bad]
        self.stats.dead_lettered += await send_dead_letters(self.redis, self.group, letters)

    async def _isolating(self, batch: Sequence[Message], depth: int = 0) -> dict[EntryKey, str]:
        """The poison entries of ``batch`` with their reasons, bisecting it when the handler fails on it."""
        try:
            return await self._retrying(lambda: self._handle(batch), "batch")
        except StopConsumer:
            raise
        except Exception as exc:
            if len(batch) == 1:
                entry = batch[0].entry
                return {entry.key: failed_alone(entry.deliveries, self.settings.max_deliveries, exc)}
            self.stats.bisections += 1
            log.log(
                logging.WARNING if depth == 0 else logging.DEBUG,
                "handler failed on a batch; splitting it to find the entry that breaks it",
                extra=self._extra(entries=len(batch), error=describe(exc)),
            )
            first, second = halves(batch)
            found = await self._isolating(first, depth + 1)
            found.update(await self._isolating(second, depth + 1))
            return found

    async def _handle(self, batch: Sequence[Message]) -> dict[EntryKey, str]:
        """The handler's verdict: the poison entries of the batch with their reasons (none: all handled)."""
        try:
            await self.handler.handle(batch)
        except PoisonEntries as exc:
            keys_in_batch = {m.entry.key for m in batch}
            return {key: why for key, why in exc.reasons.items() if key in keys_in_batch}
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise RetryLater(f"redis unavailable while handling: {exc}") from exc
        return {}

    async def ack(self, entries: Sequence[Entry]) -> None:
        """XACK handled entries (after the handler's commit)."""
        await groups.ack(self.redis, self.group, entries)
