"""Stable consumer names (slot locks), own pending entries after a SIGKILL, stale consumers removed."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from core.settings import ServerSettings, load_server_settings, sqlite_url
from realtime import keys
from tests.fault_kit import DatabaseLock, worker_killed_mid_batch
from tests.test_worker import (
    count_rows,
    events,
    new_tenant,
    produce,
    running,
    settings_for,
    settled,
)
from tests.waiting import wait_until
from workers.consumer import StreamConsumer
from workers.consumer_names import NoConsumerSlot, consumer_name, lock_path, stale_consumers, take_slot
from workers.handling import Message
from workers.persist import persist_consumer

HOST = socket.gethostname()


class CountingHandler:
    """Handles every batch, counting the entries."""

    def __init__(self) -> None:
        self.handled = 0

    async def handle(self, batch: Sequence[Message]) -> None:
        self.handled += len(batch)

    def counts(self) -> Mapping[str, int]:
        return {"handled": self.handled}


def test_name_and_lock_file_of_a_slot(tmp_path: Path) -> None:
    """The name is host-group-slot; the lock is data_dir/consumers/group-slot.lock; bad parts refused."""
    assert consumer_name("pc7", "persist", 2) == "pc7-persist-2"
    assert lock_path(tmp_path, "persist", 2) == tmp_path / "consumers" / "persist-2.lock"
    with pytest.raises(ValueError, match=r"expected a consumer group name of letters.*got '\.\./x'"):
        lock_path(tmp_path, "../x", 1)
    with pytest.raises(ValueError, match="expected a slot from 1, got 0"):
        lock_path(tmp_path, "persist", 0)


def test_slots_are_taken_in_order_held_and_given_back(tmp_path: Path) -> None:
    """Two holders get slots 1 and 2 (0600 files in a 0700 folder); a released slot is taken again first."""
    first = take_slot(tmp_path, "persist", "pc7")
    second = take_slot(tmp_path, "persist", "pc7")
    other_group = take_slot(tmp_path, "build", "pc7")
    try:
        assert (first.name, second.name, other_group.name) == (
            "pc7-persist-1",
            "pc7-persist-2",
            "pc7-build-1",
        )
        assert stat.S_IMODE((tmp_path / "consumers").stat().st_mode) == 0o700
        assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
        assert first.path.read_text() == f"pc7-persist-1 pid {os.getpid()}\n"
        first.release()
        first.release()  # a second release does nothing
        again = take_slot(tmp_path, "persist", "pc7")
        assert again.name == "pc7-persist-1"
        again.release()
    finally:
        first.release()
        second.release()
        other_group.release()


def test_every_slot_held_or_no_folder_is_one_clear_error(tmp_path: Path) -> None:
    """All slots held, or a data folder that is a file: NoConsumerSlot saying what and how to fix it."""
    held = [take_slot(tmp_path, "build", "pc7", max_slots=2) for _ in range(2)]
    try:
        with pytest.raises(NoConsumerSlot) as full:
            take_slot(tmp_path, "build", "pc7", max_slots=2)
    finally:
        for slot in held:
            slot.release()
    assert str(full.value) == (
        f"consumer name: expected a free slot for group 'build' in {tmp_path / 'consumers'}, "
        "all 2 are held; set TELEWORK_WORKER_NAME"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        NoConsumerSlot, match=r"expected a writable folder .*file/consumers.*TELEWORK_WORKER_NAME"
    ):
        take_slot(blocker, "build", "pc7")


def test_worker_name_is_unset_by_default_and_the_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TELEWORK_WORKER_NAME: no name (a slot is taken at start); set: used as it is."""
    monkeypatch.delenv("TELEWORK_WORKER_NAME", raising=False)
    assert load_server_settings().worker_name is None
    monkeypatch.setenv("TELEWORK_WORKER_NAME", "pc7-worker-3")
    assert load_server_settings().worker_name == "pc7-worker-3"
    assert load_server_settings().stale_consumer_s == 3600.0


async def test_consumers_without_a_name_take_distinct_slots_and_keep_them_across_restarts(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """Two unnamed consumers of one group run as host-group-1 and -2; a restarted one is -1 again."""
    settings = ServerSettings.model_validate(
        {
            "redis_url": redis_url,
            "database_url": sqlite_url(tmp_path),
            "data_dir": tmp_path,
            "worker_block_ms": 20,
        }
    )
    a = StreamConsumer(settings, aredis, "g", CountingHandler())
    b = StreamConsumer(settings, aredis, "g", CountingHandler())
    explicit = StreamConsumer(
        settings.model_copy(update={"worker_name": "given"}), aredis, "g", CountingHandler()
    )
    async with running(a), running(b), running(explicit):
        await wait_until(lambda: a.name and b.name, what="both named")
        assert {a.name, b.name} == {f"{HOST}-g-1", f"{HOST}-g-2"}
        assert explicit.name == "given"
    first_name = a.name
    async with running(StreamConsumer(settings, aredis, "g", CountingHandler())) as again:
        await wait_until(lambda: again.name, what="named")
        assert again.name == f"{HOST}-g-1"
    assert first_name in {f"{HOST}-g-1", f"{HOST}-g-2"}
    assert sorted(p.name for p in (tmp_path / "consumers").iterdir()) == ["g-1.lock", "g-2.lock"]


def test_stale_consumers_rule() -> None:
    """Stale: idle past the limit with nothing pending, never this consumer itself."""
    infos: list[dict[str, Any]] = [
        {"name": b"old-empty", "pending": 0, "idle": 5000},
        {"name": "old-busy", "pending": 3, "idle": 5000},
        {"name": "fresh", "pending": 0, "idle": 10},
        {"name": "me", "pending": 0, "idle": 9000},
        {"name": "at-limit", "pending": 0, "idle": 1000},
    ]
    assert stale_consumers(infos, "me", 1000) == ["old-empty"]


async def consumers_of(client: aioredis.Redis, stream: str, group: str) -> dict[str, int]:
    return {c["name"]: int(c["pending"]) for c in await client.xinfo_consumers(stream, group)}


async def test_stale_consumers_deleted_and_a_busy_one_claimed_first(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """An idle empty consumer is deleted at once; one with pending entries is claimed, then deleted."""
    tenant = new_tenant()
    stream = keys.events_stream(tenant)
    await aredis.xgroup_create(stream, "g", id="0", mkstream=True)
    await produce(aredis, tenant, events(tenant, 3))
    await aredis.xreadgroup("g", "gone-busy", {stream: ">"}, count=3)
    await aredis.xgroup_createconsumer(stream, "g", "gone-empty")  # nothing pending

    async def idle_enough() -> bool:
        return all(int(c["idle"]) > 300 for c in await aredis.xinfo_consumers(stream, "g"))

    await wait_until(idle_enough, what="both consumers idle past 300 ms")
    settings = ServerSettings.model_validate(
        {
            "redis_url": redis_url,
            "database_url": sqlite_url(tmp_path),
            "data_dir": tmp_path,
            "worker_name": "alive",
            "worker_block_ms": 20,
            "tenant_refresh_s": 0.05,
            "stale_consumer_s": 0.2,
            "claim_idle_ms": 100,
            "claim_interval_s": 0.05,
        }
    )
    handler = CountingHandler()
    consumer = StreamConsumer(settings, aredis, "g", handler)
    seen: list[dict[str, int]] = []

    async def only_alive_left() -> bool:
        now = await consumers_of(aredis, stream, "g")
        if not seen or seen[-1] != now:
            seen.append(now)
        return now == {"alive": 0}

    async with running(consumer):
        await wait_until(only_alive_left, what="the stale consumers deleted")
    assert handler.handled == 3
    assert (consumer.stats.claimed, consumer.stats.stale_deleted) == (3, 2)
    assert {"gone-busy": 0, "alive": 0} in seen  # claimed first, deleted on a later pass
    assert all("gone-busy" in s for s in seen if "gone-empty" in s)


@pytest.mark.slow
async def test_sigkilled_unnamed_worker_is_the_same_consumer_again_and_finishes_at_once(
    aredis: aioredis.Redis, redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """An unnamed worker SIGKILLed mid-batch: the next one has its name and stores its entries at start."""
    tenant, n = new_tenant(), 200
    stream = keys.events_stream(tenant)
    await produce(aredis, tenant, events(tenant, n))
    name = f"{HOST}-{keys.PERSIST_GROUP}-1"
    env = {
        **{k: v for k, v in os.environ.items() if k != "TELEWORK_WORKER_NAME"},
        "TELEWORK_REDIS_URL": redis_url,
        "TELEWORK_DATABASE_URL": database_url,
        "TELEWORK_DATA_DIR": str(tmp_path),
        "TELEWORK_TENANT_REFRESH_S": "0.05",
    }
    lock = DatabaseLock(database_url, engine)
    async with worker_killed_mid_batch(aredis, stream, name, n, env, tmp_path / "killed.log", lock):
        settings = settings_for(redis_url, database_url, tmp_path, worker_name=None, claim_idle_ms=600_000)
        worker = persist_consumer(settings, engine, aredis)
        started = time.monotonic()
        async with running(worker):
            await wait_until(settled(aredis, engine, tenant, n), timeout=30, what=f"{n} rows, 0 pending")
            took = time.monotonic() - started
    assert worker.name == name
    assert await count_rows(engine, tenant) == n
    assert (worker.stats.claimed, worker.handler.stats.inserted, worker.stats.dead_lettered) == (0, n, 0)
    assert took < 30  # far below claim_idle_ms (600 s): its own entries, re-read at start
