"""``telework admin settings set``: change a tenant's AgentSettings and push them live."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pydantic import ValidationError

from core.errors import OperatorError
from core.process import redis_url
from core.settings import ServerSettings
from realtime.protocol import AgentSettings


class SettingsError(OperatorError, ValueError):
    """The settings change cannot be made; the message says why."""


def merge_settings(current: AgentSettings, changes: Mapping[str, object]) -> AgentSettings:
    """Pure: ``current`` with ``changes`` applied, validated; SettingsError names the bad field."""
    try:
        return AgentSettings.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SettingsError(f"{field}: {err['msg']} (got {changes.get(field)!r})") from None


def _check_tenant(settings: ServerSettings, tenant: str) -> None:
    from sqlmodel import Session

    from storage.db import check_schema, make_engine
    from storage.models import Tenant

    engine = make_engine(settings.database())
    try:
        check_schema(engine)
        with Session(engine) as s:
            if s.get(Tenant, tenant) is None:
                raise SettingsError(f"tenant {tenant!r} does not exist")
    finally:
        engine.dispose()


def set_tenant_settings(
    settings: ServerSettings, tenant: str, changes: Mapping[str, object]
) -> AgentSettings:
    """Apply ``changes`` to the tenant's current settings, store and publish them; returns the result."""
    import redis.asyncio as aioredis

    from realtime.tenant_settings import load_settings, publish_settings

    if not changes:
        raise SettingsError("nothing to change: give at least one setting option (see --help)")
    _check_tenant(settings, tenant)
    url = redis_url(settings, "pushing settings to the agents")

    async def apply() -> AgentSettings:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            new = merge_settings(await load_settings(client, tenant), changes)
            await publish_settings(client, tenant, new)
            return new
        finally:
            await client.aclose()

    return asyncio.run(apply())
