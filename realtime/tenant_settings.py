"""Each tenant's agent settings on their way to live sessions: Redis cache and push, database truth.

The overrides live in the database (:mod:`storage.agent_settings_store`); a tenant's
:class:`~realtime.protocol.agent_settings.SettingsLayers` (every override and who is in which group) is
cached in Redis under :func:`realtime.keys.settings_key` and announced on
:func:`realtime.keys.settings_channel` by :func:`publish_layers` after each change.
:class:`SettingsCache` answers the gateway: a cache miss (Redis flushed, expired or unreadable)
reads the database and fills the cache again. Every gateway's :class:`SettingsListener`
pattern-subscribes to the channels and hands each announced tenant's layers to the gateway,
which sends every open session of that tenant the effective settings of its user
(:func:`realtime.protocol.agent_settings.resolve`). Given ``push_tasks``, the same listener follows
:data:`realtime.keys.TASKS_CHANNEL_PATTERN` (task list changes, :mod:`realtime.tenant_tasks`).
The listener subscribes again when Redis goes away or restarts (its client reconnects by itself,
:mod:`realtime.redis_client`; beyond that it backs off, :func:`resubscribe_delay`), and ends on
:meth:`SettingsListener.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from realtime import keys
from realtime.protocol import AgentSettings, ProtocolError, TasksPush, encode, parse_record
from realtime.protocol.agent_settings import SettingsLayers, resolve, tenant_layers
from realtime.tenant_tasks import decode_tasks

log = logging.getLogger(__name__)

CACHE_TTL_S = 3600  # a cached tenant is read from the database again at least this often (memberships)
LISTEN_WAKE_S = 1.0  # the settings listener's reader wakes up this often (health check, stop)
RESUBSCRIBE_FIRST_S = 0.25  # first wait before subscribing again; doubles per failure
RESUBSCRIBE_CAP_S = 2.0  # longest wait between two subscription attempts

Lookup = Callable[[str], SettingsLayers]  # tenant -> its layers from the database (blocking)


class SettingsUnavailable(RuntimeError):
    """Neither the cache nor the database could say what a tenant's settings are."""


def decode_layers(tenant: str, raw: str | bytes | None) -> SettingsLayers | None:
    """Pure: cached or announced JSON -> SettingsLayers; None when absent or unreadable (logged)."""
    if raw is None:
        return None
    try:
        layers: SettingsLayers = parse_record(raw, SettingsLayers)
    except ProtocolError as err:
        log.error(
            "unreadable tenant settings in redis; reading the database",
            extra={"tenant": tenant, "key": keys.settings_key(tenant), "error": err.message},
        )
        return None
    return layers


async def publish_layers(redis: aioredis.Redis, tenant: str, layers: SettingsLayers) -> int:
    """Cache ``layers`` for ``tenant`` and announce them to every gateway; returns the listeners."""
    data = encode(layers)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(keys.settings_key(tenant), data, ex=CACHE_TTL_S)
        pipe.publish(keys.settings_channel(tenant), data)
        _, receivers = await pipe.execute()
    log.info("tenant settings published", extra={"tenant": tenant, "gateways": receivers})
    return int(receivers)


async def publish_settings(redis: aioredis.Redis, tenant: str, settings: AgentSettings) -> int:
    """Cache and announce tenant-wide values only (the fields set in ``settings``), no database.

    For tests and tools without a database; the database stays the truth, so a cache miss
    brings its values back. Operators change settings through ``telework admin settings set``.
    """
    return await publish_layers(redis, tenant, tenant_layers(settings))


async def load_settings(redis: aioredis.Redis, tenant: str) -> AgentSettings:
    """The tenant-level settings the cache holds (defaults when it holds none)."""
    layers = decode_layers(tenant, await redis.get(keys.settings_key(tenant)))
    return resolve(layers or SettingsLayers(), None).settings


class SettingsCache:
    """Tenant -> layers: Redis first, the database (``lookup``, in a thread) on a miss."""

    def __init__(self, redis: aioredis.Redis, lookup: Lookup | None) -> None:
        self.redis = redis
        self.lookup = lookup  # None: no database, a miss means the defaults
        self.reads = 0  # database reads (cache misses)

    async def layers(self, tenant: str) -> SettingsLayers:
        """The tenant's layers; RedisError when Redis is down, SettingsUnavailable when the database is."""
        raw = await self.redis.get(keys.settings_key(tenant))
        cached = decode_layers(tenant, raw)
        if cached is not None:
            return cached
        if self.lookup is None:
            return SettingsLayers()
        self.reads += 1
        try:
            layers = await asyncio.to_thread(self.lookup, tenant)
        except (SQLAlchemyError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("cannot read the tenant's settings", extra={"tenant": tenant, "error": error})
            raise SettingsUnavailable(f"settings of tenant {tenant} unavailable: {error}") from exc
        # A miss is filled only if nothing newer arrived meanwhile; an unreadable value is replaced.
        await self.redis.set(keys.settings_key(tenant), encode(layers), ex=CACHE_TTL_S, nx=raw is None)
        log.info("tenant settings read from the database", extra={"tenant": tenant})
        return layers

    async def for_user(self, tenant: str, user_id: int | None) -> AgentSettings:
        """The effective settings of ``user_id`` (None: the tenant's) in ``tenant``."""
        return resolve(await self.layers(tenant), user_id).settings


class SettingsListener:
    """Pattern-subscribes to every tenant's settings channel and hands each change to ``push``
    (None: the announcement was unreadable, the gateway reads the cache or database instead);
    given ``push_tasks``, every tenant's tasks channel too, each change to ``push_tasks``.

    Changes announced while the subscription was down are not replayed by Redis; when it is back
    after a failure, ``on_resubscribed`` runs (the gateway pushes its open tenants' current
    settings, read through the cache, and task lists, read afresh, again), so a change made during
    a Redis restart still reaches the sessions."""

    def __init__(
        self,
        redis: aioredis.Redis,
        push: Callable[[str, SettingsLayers | None], Awaitable[int]],
        push_tasks: Callable[[str, TasksPush], Awaitable[int]] | None = None,
        on_resubscribed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.redis = redis
        self.on_resubscribed = on_resubscribed
        self.push = push
        self.push_tasks = push_tasks
        self.patterns = [keys.SETTINGS_CHANNEL_PATTERN]
        if push_tasks is not None:
            self.patterns.append(keys.TASKS_CHANNEL_PATTERN)
        self.subscribed = asyncio.Event()  # set while every pattern subscription is live
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    def stop(self) -> None:
        """End :meth:`run`: at once (a cancel), at the latest at its next wake-up (``LISTEN_WAKE_S``).

        The flag is what makes it sure: a cancel that lands as a Redis read completes can be lost
        inside redis-py (``asyncio.wait_for`` on Python 3.11), and a listener blocked for good on
        ``listen()`` kept the gateway from ever stopping.
        """
        self._stopping.set()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def run(self) -> None:
        """Until :meth:`stop` (or a cancel): subscribe, hand on every message, and subscribe again
        with backoff (:func:`resubscribe_delay`) when Redis goes away or restarts."""
        self._task = asyncio.current_task()
        failures = 0
        been_subscribed = False
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(*self.patterns)
                while not self._stopping.is_set():
                    # A timed wait, not listen(): the reader wakes up to health-check its
                    # connection (client option) and to see a stop.
                    message = await pubsub.get_message(timeout=LISTEN_WAKE_S)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe" and int(message["data"]) >= len(self.patterns):
                        self.subscribed.set()
                        if failures:
                            log.info("settings subscription back", extra={"after_failures": failures})
                            failures = 0
                        if been_subscribed and self.on_resubscribed is not None:
                            # back after a loss (here, or redis-py reconnecting and subscribing again)
                            await self.on_resubscribed()
                        been_subscribed = True
                    elif message["type"] == "pmessage":
                        await self._on_message(str(message["channel"]), message["data"])
            except (RedisError, OSError) as exc:
                failures += 1
                delay = resubscribe_delay(failures)
                log.warning(
                    "settings subscription lost; subscribing again",
                    extra={"error": str(exc), "retry_s": delay, "failures": failures},
                )
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            if failures and not self._stopping.is_set():
                await _wait_for_event(self._stopping, resubscribe_delay(failures))  # back off

    async def _on_message(self, channel: str, data: Any) -> None:
        try:
            tenant = keys.tenant_of(channel)
        except ValueError as exc:
            log.error(
                "settings message on an unexpected channel", extra={"channel": channel, "error": str(exc)}
            )
            return
        if channel == keys.tasks_channel(tenant):
            frame = decode_tasks(tenant, data)
            if frame is not None and self.push_tasks is not None:
                await self.push_tasks(tenant, frame)
            return
        await self.push(tenant, decode_layers(tenant, data if isinstance(data, str | bytes) else str(data)))


def resubscribe_delay(failures: int) -> float:
    """Pure: the wait before subscribing again after ``failures`` failures in a row (>= 1):
    0.25 s doubling to ``RESUBSCRIBE_CAP_S``, so a restarted Redis is followed within seconds."""
    if failures < 1:
        raise ValueError(f"failures: expected >= 1, got {failures}")
    return float(min(RESUBSCRIBE_CAP_S, RESUBSCRIBE_FIRST_S * 2 ** min(failures - 1, 16)))


async def _wait_for_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
