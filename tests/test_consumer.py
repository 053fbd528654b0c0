"""The stream consumer steered by its handler's named exceptions, against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis.asyncio as aioredis

from core.settings import ServerSettings, sqlite_url
from realtime import keys
from tests.test_worker import dead_letters, events, new_tenant, produce
from tests.waiting import wait_until
from workers.consumer import RETRY_FIRST_S, StreamConsumer, next_delay
from workers.handling import Message, Periodic, PoisonEntries, RetryLater, StopConsumer

GROUP = "test-group"


class ScriptedHandler:
    """The i-th call raises ``script[i]`` (None, or past the script: handled once ``release`` is set)."""

    def __init__(self, *script: Exception | None) -> None:
        self.script = list(script)
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def handle(self, batch: Sequence[Message]) -> None:
        self.batches.append([m.entry.entry_id for m in batch])
        call = len(self.batches) - 1
        action = self.script[call] if call < len(self.script) else None
        if action is not None:
            raise action
        await self.release.wait()

    def counts(self) -> Mapping[str, int]:
        return {"calls": len(self.batches)}


def consumer_for(
    redis_url: str,
    tmp_path: Path,
    client: aioredis.Redis,
    handler: ScriptedHandler,
    hooks: Sequence[Periodic] = (),
) -> StreamConsumer[ScriptedHandler]:
    settings = ServerSettings.model_validate(
        {
            "redis_url": redis_url,
            "database_url": sqlite_url(tmp_path),
            "data_dir": tmp_path,
            "worker_name": "c1",
            "worker_block_ms": 20,
            "tenant_refresh_s": 0.05,
        }
    )
    return StreamConsumer(settings, client, GROUP, handler, hooks=hooks)


async def pending(client: aioredis.Redis, tenant: str) -> int:
    return int((await client.xpending(keys.events_stream(tenant), GROUP))["pending"])


async def test_retry_later_keeps_the_batch_pending_and_hands_it_over_again(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """RetryLater: the same batch is handed over again after the pause, pending until that call returns."""
    tenant = new_tenant()
    ids = await produce(aredis, tenant, events(tenant, 5))
    handler = ScriptedHandler(RetryLater("database down"))
    handler.release.clear()  # the second call (the retry) waits for the test
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: len(handler.batches) == 2, what="the batch handed over again")
        assert await pending(aredis, tenant) == 5
        handler.release.set()
        await wait_until(lambda: consumer.stats.acked == 5, what="the retried batch acked")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
    assert handler.batches == [ids, ids]
    assert await pending(aredis, tenant) == 0
    assert (consumer.stats.retries, consumer.stats.read, consumer.stats.dead_lettered) == (1, 5, 0)
    assert await aredis.xlen(keys.dead_letter_stream(tenant)) == 0


async def test_poison_entry_is_dead_lettered_with_its_reason_and_the_rest_acked(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """PoisonEntries: only the named entry goes to the dead-letter stream, with its reason; all are acked."""
    tenant = new_tenant()
    batch = events(tenant, 3)
    ids = await produce(aredis, tenant, batch)
    stream = keys.events_stream(tenant)
    verdict = PoisonEntries({(stream, ids[1]): "database rejected the event: value too long"})
    handler = ScriptedHandler(verdict)
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        letters = await wait_until(lambda: dead_letters(aredis, tenant), what="one dead letter")
        await wait_until(lambda: consumer.stats.acked == 2, what="the two others acked")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
    assert [(d.stream, d.entry_id, d.reason, d.deliveries, d.fields) for d in letters] == [
        (keys.events_stream(tenant), ids[1], "database rejected the event: value too long", 1, batch[1])
    ]
    assert handler.batches == [ids]
    assert await pending(aredis, tenant) == 0
    assert (consumer.stats.read, consumer.stats.acked, consumer.stats.dead_lettered) == (3, 2, 1)


async def test_stop_consumer_ends_the_loop_with_the_batch_pending(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """StopConsumer: run() returns without the stop event; the batch is neither acked nor dead-lettered."""
    tenant = new_tenant()
    ids = await produce(aredis, tenant, events(tenant, 4))
    handler = ScriptedHandler(StopConsumer("operator asked"))
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)
    stop = asyncio.Event()
    await asyncio.wait_for(consumer.run(stop), timeout=15)
    assert not stop.is_set()
    assert handler.batches == [ids]
    assert await pending(aredis, tenant) == 4
    assert (consumer.stats.acked, consumer.stats.dead_lettered) == (0, 0)
    assert await aredis.xlen(keys.dead_letter_stream(tenant)) == 0


async def test_stop_event_while_retrying_stops_with_the_batch_pending(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A stop request during a RetryLater pause ends run() at once; the batch stays pending."""
    tenant = new_tenant()
    ids = await produce(aredis, tenant, events(tenant, 3))
    handler = ScriptedHandler(*[RetryLater("database down")] * 100)
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await wait_until(lambda: consumer.stats.retries == 1, what="the first retry")
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert handler.batches == [ids]
    assert await pending(aredis, tenant) == 3
    assert consumer.stats.acked == 0


async def test_periodic_hook_runs_at_start_and_is_retried_after_retry_later(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A periodic hook runs at start (no entries needed); its RetryLater makes the consumer call it again."""
    calls: list[int] = []

    async def hook() -> None:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise RetryLater("database down")

    handler = ScriptedHandler()
    consumer = consumer_for(redis_url, tmp_path, aredis, handler, hooks=[Periodic("silence", 3600.0, hook)])
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: calls == [1, 2], what="the hook called again after RetryLater")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
    assert calls == [1, 2]
    assert (consumer.stats.retries, handler.batches) == (1, [])


def test_retry_pauses_double_up_to_the_cap() -> None:
    """RetryLater pauses: 0.5 s doubling, capped at 10 s."""
    delays = [RETRY_FIRST_S]
    for _ in range(6):
        delays.append(next_delay(delays[-1]))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
