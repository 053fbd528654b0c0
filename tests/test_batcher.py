"""Group-committed Redis writes (realtime.batcher) against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from realtime.batcher import BatcherStopped, WriteBatcher, _Job, take_jobs


async def test_take_jobs_keeps_whole_jobs_within_the_command_budget() -> None:
    """Jobs are never split: the budget stops before a job that would exceed it, but one job always goes."""
    jobs = [_Job([("PING",)] * n) for n in (3, 4, 10)]
    taken, rest = take_jobs(jobs, max_commands=7)
    assert [len(j.commands) for j in taken] == [3, 4]
    assert [len(j.commands) for j in rest] == [10]
    taken, rest = take_jobs(rest, max_commands=7)
    assert [len(j.commands) for j in taken] == [10]
    assert rest == []


async def test_concurrent_submits_share_pipelines_and_keep_order(aredis: aioredis.Redis) -> None:
    """200 concurrent frames are written in submit order in far fewer pipelines than frames."""
    batcher = WriteBatcher(aredis)
    writer = asyncio.create_task(batcher.run())
    await asyncio.gather(*(batcher.submit([("RPUSH", "order", str(i))]) for i in range(200)))
    batcher.stop()
    await writer
    assert await aredis.lrange("order", 0, -1) == [str(i) for i in range(200)]
    assert batcher.commands == 200
    assert batcher.pipelines < 20


async def test_a_failing_command_fails_only_its_own_frame(aredis: aioredis.Redis) -> None:
    """A command Redis rejects raises in its submitter; the frames beside it in the pipeline succeed
    and get their own replies."""
    await aredis.set("plain", "x")
    batcher = WriteBatcher(aredis)
    writer = asyncio.create_task(batcher.run())
    results = await asyncio.gather(
        batcher.submit([("RPUSH", "ok", "1")]),
        batcher.submit([("XADD", "plain", "*", "e", "1")]),
        batcher.submit([("RPUSH", "ok", "2")]),
        return_exceptions=True,
    )
    batcher.stop()
    await writer
    assert (results[0], results[2]) == ([1], [2])  # each RPUSH's reply: the list's length
    assert isinstance(results[1], ResponseError)
    assert str(results[1]) == "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert await aredis.lrange("ok", 0, -1) == ["1", "2"]


async def test_submit_after_stop_is_refused(aredis: aioredis.Redis) -> None:
    """Once stopping, the batcher refuses new work with a clear error instead of hanging."""
    batcher = WriteBatcher(aredis)
    batcher.stop()
    await batcher.run()
    with pytest.raises(BatcherStopped, match="gateway is stopping"):
        await batcher.submit([("PING",)])
