"""Reconcile live states left ``online`` by a gateway that died.

A gateway marks its agents offline when their sessions end, but a gateway that
crashes (or a host that loses power) cannot. Every gateway therefore refreshes
``last_seen`` of its sessions on each heartbeat, and runs :class:`Reaper`: at
start-up and then periodically, any agent still ``online`` whose ``last_seen``
is older than the stale limit is marked offline. The write is a compare-and-set
on the exact value read (:func:`realtime.live_scripts.compare_and_set`, the Lua
script every live-state writer uses), so a reaper never overwrites a state that
a live session just refreshed; the reaped state keeps its owner, so that
session's next heartbeat (if it is alive after all) finds the state differing
from what it believes and publishes it online again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from realtime import keys
from realtime.live import went_offline
from realtime.live_scripts import compare_and_set
from realtime.protocol import LiveState, ProtocolError, encode, parse_record

log = logging.getLogger(__name__)


def stale(states: Iterable[LiveState], now: datetime, limit_s: float) -> list[LiveState]:
    """The states still marked online whose last sign of life is older than ``limit_s``."""
    cutoff = now - timedelta(seconds=limit_s)
    return [s for s in states if s.online and s.last_seen < cutoff]


async def reap_tenant(redis: Any, tenant: str, now: datetime, limit_s: float) -> list[str]:
    """Mark the tenant's stale online agents offline; returns their agent ids."""
    raw_states: dict[str, str] = await redis.hgetall(keys.live_hash(tenant))
    parsed: dict[str, tuple[str, LiveState]] = {}
    for agent_id, raw in raw_states.items():
        try:
            parsed[agent_id] = (raw, parse_record(raw, LiveState))
        except ProtocolError as err:
            log.warning("unreadable live state", extra={"tenant": tenant, "agent_id": agent_id, "why": err})
    reaped: list[str] = []
    for state in stale((s for _, s in parsed.values()), now, limit_s):
        raw = parsed[state.agent_id][0]
        new = encode(went_offline(state, state.last_seen))
        if await redis.execute_command(*compare_and_set(tenant, state.agent_id, raw, new)):
            reaped.append(state.agent_id)
    if reaped:
        log.info("stale agents marked offline", extra={"tenant": tenant, "agents": len(reaped)})
    return reaped


class Reaper:
    """Runs :func:`reap_tenant` over every tenant at start and every ``interval_s``."""

    def __init__(self, redis: Any, limit_s: float, interval_s: float) -> None:
        self.redis = redis
        self.limit_s = limit_s
        self.interval_s = interval_s
        self.rounds = 0

    async def run_once(self, now: datetime) -> dict[str, list[str]]:
        tenants: set[str] = await self.redis.smembers(keys.TENANTS)
        result = {t: await reap_tenant(self.redis, t, now, self.limit_s) for t in sorted(tenants)}
        self.rounds += 1
        return {t: agents for t, agents in result.items() if agents}

    async def run(self, stop: asyncio.Event, clock: Any) -> None:
        while not stop.is_set():
            try:
                await self.run_once(clock())
            except (RedisError, OSError) as exc:
                log.warning("reaper round failed", extra={"error": str(exc)})
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                continue
