"""A poison entry harms only itself: bisection, over-delivered entries alone, entry keys per stream."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.settings import ServerSettings, sqlite_url
from realtime import keys
from realtime.protocol import StreamEvent
from tests.test_worker import dead_letters, event_json, events, new_tenant, produce
from tests.waiting import wait_until
from workers.consumer import StreamConsumer
from workers.dead_letter import DeadLetterReason
from workers.handling import Entry, Message, PoisonEntries
from workers.isolation import (
    ALONE,
    MAX_REASON_CHARS,
    TOGETHER,
    describe,
    failed_alone,
    halves,
    route,
    sort_out,
)

GROUP = "isolation-group"


class EntryBreakingHandler:
    """Raises ``error`` on every batch holding one of the ``breaking`` entry ids; records each call."""

    def __init__(self, breaking: set[str], error: Exception, first_calls: Sequence[Exception] = ()) -> None:
        self.breaking = breaking
        self.error = error
        self.first_calls = list(first_calls)
        self.batches: list[list[str]] = []
        self.handled: list[str] = []

    async def handle(self, batch: Sequence[Message]) -> None:
        ids = [m.entry.entry_id for m in batch]
        self.batches.append(ids)
        if self.first_calls:
            raise self.first_calls.pop(0)
        if self.breaking & set(ids):
            raise self.error
        self.handled.extend(ids)

    def counts(self) -> Mapping[str, int]:
        return {"handled": len(self.handled)}


def consumer_for(
    redis_url: str, tmp_path: Path, client: aioredis.Redis, handler: Any, **extra: object
) -> Any:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": sqlite_url(tmp_path),
        "data_dir": tmp_path,
        "worker_name": "c1",
        "worker_block_ms": 20,
        "tenant_refresh_s": 0.05,
    }
    values.update(extra)
    return StreamConsumer(ServerSettings.model_validate(values), client, GROUP, handler)


async def pending(client: aioredis.Redis, tenant: str) -> int:
    """Entries pending in the group (-1 while the consumer has not created the group yet)."""
    try:
        return int((await client.xpending(keys.events_stream(tenant), GROUP))["pending"])
    except ResponseError:
        return -1


async def run_until(consumer: Any, condition: Any, what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(condition, timeout=15, what=what)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


# ------------------------------------------------------------------ pure rules


def test_route_by_deliveries() -> None:
    """Up to the limit together, up to twice the limit alone, past that dead-lettered with the reason."""
    assert [route(d, 5) for d in (1, 5, 6, 10)] == [TOGETHER, TOGETHER, ALONE, ALONE]
    assert route(11, 5) == DeadLetterReason(
        "delivered 11 times (limit 5; more than 10 means it ends the process even when handled alone)"
    )


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=1000))
def test_route_is_a_partition_of_the_delivery_counts(deliveries: int, limit: int) -> None:
    """Every delivery count has exactly one route, and it grows stricter with the count."""
    decided = route(deliveries, limit)
    if deliveries <= limit:
        assert decided == TOGETHER
    elif deliveries <= 2 * limit:
        assert decided == ALONE
    else:
        assert isinstance(decided, DeadLetterReason)
        assert decided.reason.startswith(f"delivered {deliveries} times (limit {limit};")


def test_halves_keep_order_and_refuse_single_entries() -> None:
    """A batch splits into two ordered halves; a single entry cannot be split (the error says so)."""
    assert halves([1, 2, 3, 4, 5]) == ([1, 2], [3, 4, 5])
    assert halves([1, 2]) == ([1], [2])
    try:
        halves([1])
    except ValueError as exc:
        assert str(exc) == "expected a batch of at least 2 entries to split, got 1"
    else:
        raise AssertionError("halves([1]) did not raise")


def test_reasons_name_the_exception_type_and_message() -> None:
    """Built-in types unqualified, others with their module; whitespace folded; long messages cut."""
    assert describe(OverflowError("date value out of range")) == "OverflowError: date value out of range"
    assert describe(DeadLetterError("a\n  b")) == "tests.test_isolation.DeadLetterError: a b"
    assert describe(KeyError()) == "KeyError"
    long = describe(ValueError("x" * 5000))
    assert len(long) == MAX_REASON_CHARS and long.endswith("...")
    assert failed_alone(1, 5, ValueError("bad")) == "the handler failed on it alone: ValueError: bad"
    assert failed_alone(7, 5, ValueError("bad")) == (
        "delivered 7 times (limit 5) and the handler failed on it alone: ValueError: bad"
    )


class DeadLetterError(Exception):
    """An exception type of this module (its name is qualified in reasons)."""


def test_sort_out_routes_each_entry() -> None:
    """Undecodable and far over-delivered entries are dead at once; over-delivered ones go alone."""
    good = {keys.ENTRY_FIELD: event_json("acme", 1)}
    batch = [
        Entry("s", "1-0", good, 1),
        Entry("s", "2-0", {"x": "1"}, 1),
        Entry("s", "3-0", good, 6),
        Entry("s", "4-0", good, 11),
        Entry("s", "5-0", good, 5),
    ]
    out = sort_out(batch, 5)
    assert [m.entry.entry_id for m in out.together] == ["1-0", "5-0"]
    assert [m.entry.entry_id for m in out.alone] == ["3-0"]
    assert [(e.entry_id, why) for e, why in out.dead] == [
        ("2-0", "entry has no field 'e'; fields: x"),
        (
            "4-0",
            "delivered 11 times (limit 5; more than 10 means it ends the process even when handled alone)",
        ),
    ]
    assert out.together[0].event == StreamEvent.model_validate_json(good[keys.ENTRY_FIELD])


# ------------------------------------------------------------- against Redis


async def test_failing_entries_are_bisected_out_and_the_rest_acked(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A handler failing on two entries of eight: only those two are dead-lettered, the consumer goes on."""
    tenant = new_tenant()
    batch = events(tenant, 8)
    ids = await produce(aredis, tenant, batch)
    handler = EntryBreakingHandler({ids[1], ids[5]}, OverflowError("date value out of range"))
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: consumer.stats.acked == 6, what="six entries acked")
        later = await produce(aredis, tenant, events(tenant, 3))
        await wait_until(lambda: consumer.stats.acked == 9, what="later entries handled too")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
    assert handler.batches[:11] == [
        ids,
        ids[:4],
        ids[:2],
        ids[:1],
        ids[1:2],
        ids[2:4],
        ids[4:],
        ids[4:6],
        ids[4:5],
        ids[5:6],
        ids[6:],
    ]
    assert handler.handled == [ids[0], ids[2], ids[3], ids[4], ids[6], ids[7], *later]
    letters = await dead_letters(aredis, tenant)
    reason = "the handler failed on it alone: OverflowError: date value out of range"
    assert [(d.entry_id, d.reason, d.deliveries, d.fields) for d in letters] == [
        (ids[1], reason, 1, batch[1]),
        (ids[5], reason, 1, batch[5]),
    ]
    assert await pending(aredis, tenant) == 0
    assert (consumer.stats.dead_lettered, consumer.stats.bisections) == (2, 5)


async def test_over_delivered_entries_are_handled_alone(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """Over-delivered entries go one per call: a valid one is stored, a failing one dead-lettered alone."""
    tenant = new_tenant()
    stream = keys.events_stream(tenant)
    await aredis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    valid, failing, fatal = await produce(aredis, tenant, events(tenant, 3))
    await aredis.xreadgroup(GROUP, "crashed", {stream: ">"}, count=3)  # delivery 1
    for _ in range(4):  # deliveries 2..5; the claim makes 6
        await aredis.xclaim(stream, GROUP, "crashed", 0, [valid, failing])
    for _ in range(10):  # deliveries 2..11; the claim makes 12
        await aredis.xclaim(stream, GROUP, "crashed", 0, [fatal])
    [fresh] = await produce(aredis, tenant, events(tenant, 1))
    handler = EntryBreakingHandler({failing}, ValueError("no such agent"))
    consumer = consumer_for(
        redis_url, tmp_path, aredis, handler, max_deliveries=5, claim_idle_ms=100, claim_interval_s=0.05
    )

    async def settled() -> bool:
        return await pending(aredis, tenant) == 0 and consumer.stats.read == 4

    await run_until(consumer, settled, "every entry handled or dead-lettered")
    assert sorted(handler.handled) == sorted([valid, fresh])
    assert [valid] in handler.batches and [failing] in handler.batches
    assert all(fatal not in b for b in handler.batches)
    assert all(len(b) == 1 for b in handler.batches if valid in b or failing in b)
    letters = await dead_letters(aredis, tenant)
    fatal_reason = (
        "delivered 12 times (limit 5; more than 10 means it ends the process even when handled alone)"
    )
    assert sorted((d.entry_id, d.reason, d.deliveries) for d in letters) == sorted(
        [
            (
                failing,
                "delivered 6 times (limit 5) and the handler failed on it alone: ValueError: no such agent",
                6,
            ),
            (fatal, fatal_reason, 12),
        ]
    )
    assert consumer.stats.alone == 2


async def test_poison_is_keyed_by_stream_and_entry_id(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """Two tenants' entries with the same stream id: the poison verdict on one leaves the other acked."""
    first, second = new_tenant(), new_tenant()
    fields = {t: {keys.ENTRY_FIELD: event_json(t, 1)} for t in (first, second)}
    for tenant in (first, second):
        await aredis.xadd(keys.events_stream(tenant), fields[tenant], id="1-1")  # type: ignore[arg-type]
        await aredis.sadd(keys.TENANTS, tenant)
    verdict = PoisonEntries({(keys.events_stream(first), "1-1"): "database rejected the event: too long"})
    handler = EntryBreakingHandler(set(), ValueError("unused"), first_calls=[verdict])
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)

    async def settled() -> bool:
        return await pending(aredis, first) == 0 and await pending(aredis, second) == 0

    await run_until(consumer, settled, "both entries acked")
    assert handler.batches == [["1-1", "1-1"]]
    assert [(d.stream, d.entry_id, d.reason) for d in await dead_letters(aredis, first)] == [
        (keys.events_stream(first), "1-1", "database rejected the event: too long")
    ]
    assert await dead_letters(aredis, second) == []
    assert (consumer.stats.acked, consumer.stats.dead_lettered) == (1, 1)


async def test_redis_error_in_a_handler_is_retried_not_dead_lettered(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A Redis connection error raised by the handler hands the same batch over again (no bisection)."""
    tenant = new_tenant()
    ids = await produce(aredis, tenant, events(tenant, 4))
    handler = EntryBreakingHandler(set(), ValueError("unused"), first_calls=[RedisConnectionError("gone")])
    consumer = consumer_for(redis_url, tmp_path, aredis, handler)
    await run_until(consumer, lambda: consumer.stats.acked == 4, "the batch acked after the retry")
    assert handler.batches == [ids, ids]
    assert (consumer.stats.retries, consumer.stats.bisections, consumer.stats.dead_lettered) == (1, 0, 0)
    assert await dead_letters(aredis, tenant) == []
