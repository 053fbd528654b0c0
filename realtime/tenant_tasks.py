"""The tasks each tenant offers its agents: read from the database, cached, announced over Redis.

The list lives in the ``task`` table (:mod:`storage.tasks`). A change made there is
announced with :func:`publish_tasks` on ``tw:{tenant}:tasks`` as a ``tasks`` frame's
JSON; every gateway's listener (:class:`realtime.tenant_settings.SettingsListener`)
hands it to :meth:`TaskOffers.announced` and pushes the frame to the tenant's sessions.
A session's ``welcome`` carries :meth:`TaskOffers.get`: the cached list, read afresh
from the database (in a worker thread) when older than ``ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError

from realtime import keys
from realtime.protocol import ProtocolError, TasksPush, encode, parse_server_frame

log = logging.getLogger(__name__)

MAX_CACHED_TENANTS = 10_000

Lookup = Callable[[str], list[str]]  # tenant -> its active task names (blocking)


def decode_tasks(tenant: str, data: Any) -> TasksPush | None:
    """Pure: a published ``tasks`` frame; None (logged) when it is not one."""
    try:
        frame = parse_server_frame(data if isinstance(data, str | bytes) else str(data))
    except ProtocolError as err:
        log.error("unreadable task list announcement", extra={"tenant": tenant, "error": err.message})
        return None
    if not isinstance(frame, TasksPush):
        log.error("task list announcement is not a tasks frame", extra={"tenant": tenant, "type": frame.type})
        return None
    return frame


async def publish_tasks(redis: aioredis.Redis, tenant: str, tasks: list[str]) -> int:
    """Announce ``tenant``'s new task list to every gateway; returns how many listeners got it."""
    receivers = int(await redis.publish(keys.tasks_channel(tenant), encode(TasksPush(tasks=tasks))))
    log.info("task list published", extra={"tenant": tenant, "tasks": len(tasks), "gateways": receivers})
    return receivers


class TaskOffers:
    """Tenant -> offered task names, cached ``ttl_s`` seconds; announcements replace the cache."""

    def __init__(self, lookup: Lookup, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._version: dict[str, int] = {}  # announcements seen per tenant

    def cached(self, tenant: str) -> list[str] | None:
        hit = self._cache.get(tenant)
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1]

    def _remember(self, tenant: str, tasks: list[str]) -> None:
        if len(self._cache) >= MAX_CACHED_TENANTS and tenant not in self._cache:
            self._cache.clear()
        self._cache[tenant] = (self._clock() + self._ttl_s, tasks)

    def forget(self) -> None:
        """Drop every cached list (announcements may have been missed): the next get reads afresh."""
        self._cache.clear()

    def announced(self, tenant: str, tasks: list[str]) -> None:
        """A published change: the cache holds it, and a database read already under way is dropped."""
        self._version[tenant] = self._version.get(tenant, 0) + 1
        self._remember(tenant, tasks)

    async def get(self, tenant: str) -> list[str] | None:
        """The tasks ``tenant`` offers; None when the database cannot say (logged)."""
        hit = self.cached(tenant)
        if hit is not None:
            return hit
        version = self._version.get(tenant, 0)
        try:
            tasks = await asyncio.to_thread(self._lookup, tenant)
        except (SQLAlchemyError, OSError) as exc:  # the session goes on without a task list
            error = f"{type(exc).__name__}: {exc}"
            log.error("cannot read the tenant's tasks", extra={"tenant": tenant, "error": error})
            return None
        if self._version.get(tenant, 0) != version:  # announced meanwhile: that list is newer
            newer = self.cached(tenant)
            return newer if newer is not None else tasks
        if self._ttl_s > 0:
            self._remember(tenant, tasks)
        return tasks
