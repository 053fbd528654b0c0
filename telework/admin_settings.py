"""``telework admin settings``: change agent settings in the database, then tell the gateways.

A change is stored first (:func:`storage.agent_settings_store.change_settings`, with its history
and an audit entry); the tenant's layers are then read back and announced on Redis
(:func:`realtime.tenant_settings.publish_layers`), so open sessions get their new effective
settings at once. When Redis cannot be reached the change stays made and the reason is
returned: agents get it at their next connection (the gateway reads the database on a miss).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import OperatorError
from core.settings import ServerSettings
from realtime.protocol.agent_settings import Change

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from storage.agent_settings_store import Target

REDIS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Outcome:
    """What ``settings set`` did: where, which fields changed, and why the push failed (None: sent)."""

    target: Target
    changes: list[Change]
    not_pushed: str | None


def announce(settings: ServerSettings, engine: Engine, tenant: str) -> str | None:
    """Read ``tenant``'s layers and announce them to the gateways; the reason when that failed."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from core.process import redis_url
    from realtime.tenant_settings import publish_layers
    from storage.agent_settings_store import load_layers

    try:
        url = redis_url(settings, "pushing settings to the agents")
    except OperatorError as exc:
        return str(exc)
    layers = load_layers(engine, tenant)

    async def send() -> None:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
        )
        try:
            await publish_layers(client, tenant, layers)
        finally:
            await client.aclose()

    try:
        asyncio.run(send())
    except (RedisError, OSError) as exc:
        return f"redis: {type(exc).__name__}: {exc}"
    return None


def set_settings(
    settings: ServerSettings,
    engine: Engine,
    tenant: str,
    changes: Mapping[str, object],
    unset: Sequence[str] = (),
    *,
    group: str | None = None,
    login: str | None = None,
    actor: str,
) -> Outcome:
    """Store the change (SettingsError when it cannot be made), then push it when anything changed."""
    from storage.agent_settings_store import change_settings

    target, done = change_settings(engine, tenant, changes, unset, group=group, login=login, actor=actor)
    return Outcome(target, done, announce(settings, engine, tenant) if done else None)
