"""Group commit of Redis writes: every session's frame joins the next shared pipeline.

With a thousand sessions each sending frames, one pipeline per frame means a
thousand concurrent round trips fighting over a connection pool. Instead each
session submits its commands and awaits; a single writer task drains whatever
is queued, sends it as ONE pipeline over one connection, and resolves every
submitter's future with its own outcome. Order is kept: frames are written in
the order they were submitted. A session acks only after its future resolved,
so an ack still means "the XADD returned". An ``EVALSHA`` whose script Redis
does not hold (after a restart or ``SCRIPT FLUSH``) is sent again as ``EVAL``
with its text, after the rest of its pipeline, before its submitter hears back
(a session has one frame in flight at a time, so its own writes keep their order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger(__name__)

Command = tuple[Any, ...]


class BatcherStopped(RuntimeError):
    """The writer is stopping; nothing more is accepted."""


@dataclass
class _Job:
    commands: Sequence[Command]
    done: asyncio.Future[list[Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def take_jobs(queue: list[_Job], max_commands: int) -> tuple[list[_Job], list[_Job]]:
    """Split the queue: whole jobs up to ``max_commands`` commands (at least one job), and the rest."""
    taken: list[_Job] = []
    count = 0
    for index, job in enumerate(queue):
        if taken and count + len(job.commands) > max_commands:
            return taken, queue[index:]
        taken.append(job)
        count += len(job.commands)
    return taken, []


def first_error(results: Sequence[Any]) -> BaseException | None:
    return next((r for r in results if isinstance(r, BaseException)), None)


def unknown_scripts(
    commands: Sequence[Command], results: Sequence[Any], scripts: Mapping[str, str]
) -> list[tuple[int, Command]]:
    """Pure: the ``EVALSHA`` commands whose script Redis did not hold (``NOSCRIPT``), by position,
    each as the ``EVAL`` of its text (from ``scripts``: digest -> text) to send instead."""
    again = []
    for index, (command, result) in enumerate(zip(commands, results, strict=True)):
        if isinstance(result, NoScriptError) and command[0] == "EVALSHA" and command[1] in scripts:
            again.append((index, ("EVAL", scripts[command[1]], *command[2:])))
    return again


class WriteBatcher:
    """One writer task over a Redis client; ``submit`` returns once the commands were executed."""

    def __init__(
        self, redis: Any, max_commands: int = 5000, scripts: Mapping[str, str] | None = None
    ) -> None:
        self.redis = redis
        self.max_commands = max_commands
        self.scripts = dict(scripts or {})  # digest -> text: EVALSHA that met NOSCRIPT, sent as EVAL
        self._queue: list[_Job] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.pipelines = 0
        self.commands = 0

    async def submit(self, commands: Sequence[Command]) -> list[Any]:
        """Queue ``commands`` for the next pipeline; their replies, in order (an XADD's is the new
        entry id); raise the Redis error if any of them failed."""
        if self._stopping:
            raise BatcherStopped("gateway is stopping")
        job = _Job(commands)
        self._queue.append(job)
        self._wakeup.set()
        return await job.done

    async def run(self) -> None:
        """Write until :meth:`stop`; drains what was queued before returning."""
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            jobs, self._queue = take_jobs(self._queue, self.max_commands)
            await self._write(jobs)

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def _execute(self, commands: Sequence[Command]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        again = unknown_scripts(commands, results, self.scripts)
        if again:  # a restarted or flushed Redis: those scripts once more, with their text, in order
            log.info("scripts not in Redis; sent again with their text", extra={"commands": len(again)})
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, command in again:
                    pipe.execute_command(*command)
                retried = await pipe.execute(raise_on_error=False)
            for (index, _), result in zip(again, retried, strict=True):
                results[index] = result
        return results

    async def _write(self, jobs: list[_Job]) -> None:
        try:
            results = await self._execute([command for job in jobs for command in job.commands])
        except (RedisError, OSError) as exc:
            log.error("pipeline failed", extra={"frames": len(jobs), "error": str(exc)})
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)
            return
        self.pipelines += 1
        offset = 0
        for job in jobs:
            own = results[offset : offset + len(job.commands)]
            offset += len(job.commands)
            self.commands += len(own)
            if job.done.done():  # the submitter was cancelled
                continue
            error = first_error(own)
            if error is None:
                job.done.set_result(list(own))
            else:
                job.done.set_exception(error)
