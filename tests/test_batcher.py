"""Group-committed Redis writes (realtime.batcher) against a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from realtime.batcher import BatcherStopped, WriteBatcher, _Job, take_jobs, unknown_scripts
from realtime.live_scripts import digest


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


async def test_a_script_redis_lost_is_sent_again_with_its_text(aredis: aioredis.Redis) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) an EVALSHA meets NOSCRIPT: the batcher sends it
    again as EVAL with the script's text, after the rest of its pipeline, and its submitter gets the
    script's reply; the next EVALSHA finds the script cached."""
    script = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
    sha = digest(script)
    key = f"scripted-{uuid.uuid4().hex}"
    await aredis.script_flush()
    batcher = WriteBatcher(aredis, scripts={sha: script})
    writer = asyncio.create_task(batcher.run())
    results = await asyncio.gather(
        batcher.submit([("RPUSH", key, "a")]),
        batcher.submit([("EVALSHA", sha, 1, key, "b")]),
        batcher.submit([("RPUSH", key, "c")]),
    )
    again = await batcher.submit([("EVALSHA", sha, 1, key, "d")])
    batcher.stop()
    await writer
    assert (results, again) == ([[1], [3], [2]], [4])
    assert await aredis.lrange(key, 0, -1) == ["a", "c", "b", "d"]
    assert await aredis.script_exists(sha) == [True]


def test_unknown_scripts_are_only_evalsha_meeting_noscript_of_a_known_script() -> None:
    """Only an EVALSHA whose reply is NOSCRIPT and whose digest is known is sent again, as EVAL."""
    commands = [("EVALSHA", "aa", 0), ("EVALSHA", "bb", 0), ("EVAL", "x", 0), ("EVALSHA", "aa", 1, "k")]
    results = [NoScriptError("NOSCRIPT"), NoScriptError("NOSCRIPT"), NoScriptError("NOSCRIPT"), 5]
    assert unknown_scripts(commands, results, {"aa": "return 1"}) == [(0, ("EVAL", "return 1", 0))]


async def test_submit_after_stop_is_refused(aredis: aioredis.Redis) -> None:
    """Once stopping, the batcher refuses new work with a clear error instead of hanging."""
    batcher = WriteBatcher(aredis)
    batcher.stop()
    await batcher.run()
    with pytest.raises(BatcherStopped, match="gateway is stopping"):
        await batcher.submit([("PING",)])
