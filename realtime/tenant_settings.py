"""The AgentSettings of each tenant, stored in Redis and pushed to live sessions.

``tw:{tenant}:settings`` holds the :class:`~realtime.protocol.AgentSettings`
JSON of a tenant (absent: the defaults). :func:`publish_settings` stores a new
value and publishes it on the channel of the same name; every gateway process
listens on :data:`realtime.keys.SETTINGS_CHANNEL_PATTERN` and pushes a
``settings`` frame to the tenant's open sessions.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from realtime import keys
from realtime.protocol import AgentSettings, ProtocolError, encode, parse_record

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
