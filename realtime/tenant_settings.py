"""The AgentSettings of each tenant, stored in Redis and pushed to live sessions.

``tw:{tenant}:settings`` holds the :class:`~realtime.protocol.AgentSettings`
JSON of a tenant (absent: the defaults). :func:`publish_settings` stores a new
value and publishes it on the channel of the same name; every gateway process
listens on :data:`realtime.keys.SETTINGS_CHANNEL_PATTERN` and pushes a
``settings`` frame to the tenant's open sessions. Given ``push_tasks``, the same
listener also follows :data:`realtime.keys.TASKS_CHANNEL_PATTERN` (task list changes,
:mod:`realtime.tenant_tasks`) and hands each ``tasks`` frame on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime import keys
from realtime.protocol import AgentSettings, ProtocolError, SettingsPush, TasksPush, encode, parse_record
from realtime.tenant_tasks import decode_tasks

log = logging.getLogger(__name__)


def decode_settings(tenant: str, raw: str | bytes | None) -> AgentSettings:
    """Pure: stored or published JSON -> AgentSettings; absent or unreadable -> defaults (logged)."""
    if raw is None:
        return AgentSettings()
    try:
        settings: AgentSettings = parse_record(raw, AgentSettings)
    except ProtocolError as err:
        log.error(
            "unreadable tenant settings; using the defaults",
            extra={"tenant": tenant, "key": keys.settings_key(tenant), "error": err.message},
        )
        return AgentSettings()
    return settings


async def load_settings(redis: aioredis.Redis, tenant: str) -> AgentSettings:
    """The current AgentSettings of ``tenant``."""
    return decode_settings(tenant, await redis.get(keys.settings_key(tenant)))


async def publish_settings(redis: aioredis.Redis, tenant: str, settings: AgentSettings) -> None:
    """Store ``settings`` for ``tenant`` and publish them to every gateway."""
    data = encode(settings)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(keys.settings_key(tenant), data)
        pipe.publish(keys.settings_channel(tenant), data)
        await pipe.execute()
    log.info("tenant settings published", extra={"tenant": tenant})


class SettingsListener:
    """Pattern-subscribes to every tenant's settings channel and hands each change to ``push``
    (and, given ``push_tasks``, every tenant's tasks channel, each change to ``push_tasks``)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        push: Callable[[str, SettingsPush], Awaitable[int]],
        push_tasks: Callable[[str, TasksPush], Awaitable[int]] | None = None,
    ) -> None:
        self.redis = redis
        self.push = push
        self.push_tasks = push_tasks
        self.patterns = [keys.SETTINGS_CHANNEL_PATTERN]
        if push_tasks is not None:
            self.patterns.append(keys.TASKS_CHANNEL_PATTERN)
        self.subscribed = asyncio.Event()  # set while every pattern subscription is live

    async def run(self) -> None:
        """Forever (until cancelled), resubscribing with backoff when Redis goes away."""
        delay = 0.5
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(*self.patterns)
                async for message in pubsub.listen():
                    if message["type"] == "psubscribe" and int(message["data"]) >= len(self.patterns):
                        self.subscribed.set()
                        delay = 0.5
                    elif message["type"] == "pmessage":
                        await self._on_message(str(message["channel"]), message["data"])
            except (RedisError, OSError) as exc:
                log.warning(
                    "settings subscription lost; retrying", extra={"error": str(exc), "retry_s": delay}
                )
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)  # back off before resubscribing
            delay = min(delay * 2, 10.0)

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
        await self.push(tenant, SettingsPush(settings=decode_settings(tenant, data)))
