"""Agent settings as the console shows and changes them: per level, each field's effective value,
its source and the value set at that level; changes stored and pushed live like the CLI's.

The bounds are the model's (:class:`~realtime.protocol.AgentSettings`, through
:mod:`realtime.protocol.agent_settings`), the storage is :mod:`storage.agent_settings_store`
(history and the ``settings.set`` audit entry), the push is
:func:`realtime.tenant_settings.publish_layers`, as ``telework admin settings set`` does. Reads
are scoped by the caller (:class:`~web.scope.Scope`): a group the caller may not see, or a user,
is None (404 at the edge).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

from realtime.protocol.agent_settings import (
    DEFAULTS,
    FIELDS,
    Change,
    SettingsLayers,
    SettingValue,
    allowed,
    bounds,
    choices,
    describe,
    resolve,
)
from realtime.tenant_settings import publish_layers
from storage.agent_settings_store import HistoryEntry, change_settings, history, load_layers
from storage.models import Group
from web.scope import Scope

log = logging.getLogger(__name__)

Level = Literal["tenant", "group", "user"]


@dataclass(frozen=True)
class FieldInfo:
    """One setting: its name, meaning, service default and what it accepts (the model's bounds)."""

    field: str
    description: str
    default: SettingValue
    allowed: str
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...] | None


@dataclass(frozen=True)
class SettingRow:
    """A setting at one level: the effective value, where it comes from, the value set here."""

    field: str
    value: SettingValue
    source: str  # default | tenant | group NAME | user
    here: SettingValue | None  # set at this level (None: inherited)
    allowed: str


@dataclass(frozen=True)
class LevelView:
    """The settings of one level (the tenant, a group, a user)."""

    level: Level
    target_id: int | None  # the group's or user's id
    name: str  # the group's name or the user's login ("" for the tenant)
    rows: tuple[SettingRow, ...]


def field_infos() -> list[FieldInfo]:
    """Pure: every setting's description (what the API's ``/settings/fields`` answers)."""
    out = []
    for field in FIELDS:
        low, high = bounds(field)
        out.append(
            FieldInfo(
                field, describe(field), getattr(DEFAULTS, field), allowed(field), low, high, choices(field)
            )
        )
    return out


def rows_of(
    layers: SettingsLayers,
    user_id: int | None,
    groups: Sequence[int] | None,
    here: Mapping[str, SettingValue],
) -> tuple[SettingRow, ...]:
    """Pure: the effective values and sources for ``user_id`` (or a member of ``groups`` only)."""
    effective = resolve(layers, user_id, groups)
    return tuple(
        SettingRow(
            field,
            getattr(effective.settings, field),
            effective.sources[field],
            here.get(field),
            allowed(field),
        )
        for field in FIELDS
    )


def tenant_view(engine: Engine, tenant: str) -> LevelView:
    layers = load_layers(engine, tenant)
    return LevelView("tenant", None, "", rows_of(layers, None, [], layers.tenant))


def group_of(scope: Scope, group_id: int) -> tuple[int, str] | None:
    """(id, name) of a group the caller may see, else None."""
    with Session(scope.engine) as s:
        row = s.execute(scope.visible_groups().where(col(Group.id) == group_id)).scalar_one_or_none()
    if row is None or row.id is None:
        return None
    return row.id, row.name


def group_view(scope: Scope, group_id: int) -> LevelView | None:
    found = group_of(scope, group_id)
    if found is None:
        return None
    layers = load_layers(scope.engine, scope.principal.tenant)
    layer = layers.groups.get(group_id)
    here = layer.overrides if layer is not None else {}
    return LevelView("group", group_id, found[1], rows_of(layers, None, [group_id], here))


def user_view(scope: Scope, user_id: int) -> LevelView | None:
    user = scope.user(user_id)
    if user is None:
        return None
    layers = load_layers(scope.engine, scope.principal.tenant)
    return LevelView(
        "user", user_id, user.login, rows_of(layers, user_id, None, layers.users.get(user_id, {}))
    )


def change(
    scope: Scope,
    level: Level,
    target: str | None,
    values: Mapping[str, object],
    unset: Sequence[str],
    *,
    actor: str,
    source: str,
) -> list[Change]:
    """Store a change at ``level`` (``target``: the group's name or the user's login); SettingsError
    for a value out of bounds (nothing stored then)."""
    _, done = change_settings(
        scope.engine,
        scope.principal.tenant,
        values,
        unset,
        group=target if level == "group" else None,
        login=target if level == "user" else None,
        actor=actor,
        source=source,
    )
    return done


def recent_changes(engine: Engine, tenant: str, limit: int) -> list[HistoryEntry]:
    """The tenant's newest ``limit`` recorded changes, newest first."""
    return list(reversed(history(engine, tenant, limit)))


async def push(engine: Engine, redis: aioredis.Redis, tenant: str) -> bool:
    """Announce the tenant's settings to every gateway (open sessions get theirs at once).

    False when Redis cannot be reached (logged): agents get the change at their next connection.
    """
    layers = await run_in_threadpool(load_layers, engine, tenant)
    try:
        await publish_layers(redis, tenant, layers)
    except (RedisError, OSError) as exc:
        log.warning("agent settings not pushed", extra={"tenant": tenant, "error": str(exc)})
        return False
    return True
