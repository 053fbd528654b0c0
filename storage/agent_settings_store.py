"""The database partner of :mod:`realtime.protocol.agent_settings`: overrides and their history in the tables.

* :func:`change_settings` applies a change at one level (tenant, a group, a user), writes the
  new overrides, one :class:`~storage.agent_settings_models.AgentSettingsChange` row per changed
  field and a ``settings.set`` audit entry (old -> new of each field), all in one transaction;
* :func:`load_layers` reads every override of a tenant (what the gateways cache and push);
* :func:`effective_for` answers ``settings show``; :func:`history` answers ``settings history``.

Stored values that no longer fit the model (bounds tightened since) are left out and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from realtime.protocol.agent_settings import (
    Change,
    Effective,
    GroupLayer,
    Level,
    SettingsError,
    SettingsLayers,
    SettingValue,
    apply_changes,
    clean_overrides,
    resolve,
)
from storage.agent_settings_models import (
    AgentSettingsChange,
    GroupAgentSettings,
    TenantAgentSettings,
    UserAgentSettings,
)
from storage.audit_trail import AuditAction, audit
from storage.models import Group, Membership, Tenant, User, as_utc, utcnow

log = logging.getLogger(__name__)

OverrideRow = TenantAgentSettings | GroupAgentSettings | UserAgentSettings


@dataclass(frozen=True)
class Target:
    """Where a change applies: the tenant, one of its groups, or one of its users."""

    tenant: str
    level: Level
    group_id: int | None = None
    user_id: int | None = None
    name: str = ""  # the group's name or the user's login

    @property
    def label(self) -> str:
        """``tenant acme``, ``group sales of tenant acme``, ``user bob of tenant acme``."""
        if self.level == "tenant":
            return f"tenant {self.tenant}"
        return f"{self.level} {self.name} of tenant {self.tenant}"


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded change of one field."""

    changed_at: datetime
    actor: str
    level: str
    target: str
    field: str
    old: SettingValue | None
    new: SettingValue | None


def find_target(s: Session, tenant: str, group: str | None = None, login: str | None = None) -> Target:
    """The tenant, group or user named; SettingsError when one of them does not exist."""
    if group is not None and login is not None:
        raise SettingsError("expected --group or --user, got both")
    if s.get(Tenant, tenant) is None:
        raise SettingsError(f"tenant {tenant!r} does not exist")
    if group is not None:
        gid = s.execute(
            select(col(Group.id)).where(col(Group.tenant_id) == tenant, col(Group.name) == group)
        ).scalar_one_or_none()
        if gid is None:
            raise SettingsError(f"group {group!r} does not exist in tenant {tenant!r}")
        return Target(tenant, "group", group_id=gid, name=group)
    if login is not None:
        uid = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == tenant, col(User.login) == login)
        ).scalar_one_or_none()
        if uid is None:
            raise SettingsError(f"user {login!r} does not exist in tenant {tenant!r}")
        return Target(tenant, "user", user_id=uid, name=login)
    return Target(tenant, "tenant")


def _row(s: Session, target: Target) -> OverrideRow | None:
    if target.level == "tenant":
        return s.get(TenantAgentSettings, target.tenant)
    if target.level == "group":
        return s.get(GroupAgentSettings, target.group_id)
    return s.get(UserAgentSettings, target.user_id)


def _new_row(target: Target, overrides: dict[str, Any]) -> OverrideRow:
    now = utcnow()
    if target.level == "tenant":
        return TenantAgentSettings(tenant_id=target.tenant, overrides=overrides, updated_at=now)
    if target.level == "group" and target.group_id is not None:
        return GroupAgentSettings(
            group_id=target.group_id, tenant_id=target.tenant, overrides=overrides, updated_at=now
        )
    if target.user_id is not None:
        return UserAgentSettings(
            user_id=target.user_id, tenant_id=target.tenant, overrides=overrides, updated_at=now
        )
    raise SettingsError(f"expected a group or user id for a {target.level}-level change, got none")


def _clean(where: str, stored: Mapping[str, Any]) -> dict[str, SettingValue]:
    clean, problems = clean_overrides(stored)
    for problem in problems:
        log.error("stored agent setting left out", extra={"where": where, "problem": problem})
    return clean


def change_settings(
    engine: Engine,
    tenant: str,
    changes: Mapping[str, object],
    unset: Sequence[str] = (),
    *,
    group: str | None = None,
    login: str | None = None,
    actor: str,
    source: str | None = None,
) -> tuple[Target, list[Change]]:
    """Set ``changes`` and remove ``unset`` at the level named (tenant, ``group`` or ``login``).

    Returns the target and what changed (empty: the values were already so). SettingsError for
    an unknown tenant, group or user and for a value out of its bounds; nothing is written then.
    Audited as ``settings.set`` (``source`` None: the same as ``actor``).
    """
    with Session(engine) as s:
        target = find_target(s, tenant, group, login)
        row = _row(s, target)
        current = _clean(target.label, row.overrides) if row is not None else {}
        new, done = apply_changes(current, changes, unset)
        if not done:
            return target, []
        if row is None:
            s.add(_new_row(target, new))
        elif new:
            row.overrides = new
            row.updated_at = utcnow()
            s.add(row)
        else:
            s.delete(row)  # nothing overridden at this level any more
        now = utcnow()
        for change in done:
            s.add(
                AgentSettingsChange(
                    tenant_id=tenant,
                    level=target.level,
                    group_id=target.group_id,
                    user_id=target.user_id,
                    target=target.name,
                    field=change.field,
                    old=change.old,
                    new=change.new,
                    actor=actor,
                    changed_at=now,
                )
            )
        where = {
            "tenant": f"tenant:{tenant}",
            "group": f"group:{target.group_id}",
            "user": f"user:{target.user_id}",
        }
        audit(
            s, AuditAction.SETTINGS_SET, actor=actor, source=source, target=where[target.level],
            tenant_id=tenant, old={c.field: c.old for c in done}, new={c.field: c.new for c in done},
            at=now, level=target.level,
        )  # fmt: skip
        s.commit()
    log.info(
        "agent settings changed",
        extra={"tenant": tenant, "level": target.level, "fields": ",".join(c.field for c in done)},
    )
    return target, done


def load_layers(engine: Engine, tenant: str) -> SettingsLayers:
    """Every override of ``tenant`` and the members of its groups that have overrides."""
    with Session(engine) as s:
        trow = s.get(TenantAgentSettings, tenant)
        grows = s.execute(
            select(GroupAgentSettings, col(Group.name))
            .join(Group, col(Group.id) == col(GroupAgentSettings.group_id))
            .where(col(GroupAgentSettings.tenant_id) == tenant)
        ).all()
        urows = s.execute(
            select(UserAgentSettings).where(col(UserAgentSettings.tenant_id) == tenant)
        ).scalars()
        users = {u.user_id: _clean(f"user:{u.user_id}", u.overrides) for u in urows}
        groups = {
            g.group_id: GroupLayer(name=name, overrides=_clean(f"group:{g.group_id}", g.overrides))
            for g, name in grows
        }
        members: dict[int, list[int]] = {}
        if groups:
            pairs = s.execute(
                select(col(Membership.user_id), col(Membership.group_id)).where(
                    col(Membership.tenant_id) == tenant,
                    col(Membership.role) == "member",
                    col(Membership.group_id).in_(list(groups)),
                )
            ).all()
            for user_id, group_id in pairs:
                members.setdefault(int(user_id), []).append(int(group_id))
    tenant_values = _clean(f"tenant:{tenant}", trow.overrides) if trow is not None else {}
    return SettingsLayers(
        tenant=tenant_values,
        groups=groups,
        users={k: v for k, v in users.items() if v},
        members={k: sorted(v) for k, v in sorted(members.items())},
    )


def effective_for(engine: Engine, tenant: str, login: str | None = None) -> tuple[Target, Effective]:
    """The effective settings of the tenant, or of its user ``login``, with their sources."""
    with Session(engine) as s:
        target = find_target(s, tenant, login=login)
    layers = load_layers(engine, tenant)
    return target, resolve(layers, target.user_id)


def history(engine: Engine, tenant: str, limit: int | None = None) -> list[HistoryEntry]:
    """The tenant's recorded changes, oldest first (the newest ``limit`` when given)."""
    with Session(engine) as s:
        find_target(s, tenant)
        query = (
            select(AgentSettingsChange)
            .where(col(AgentSettingsChange.tenant_id) == tenant)
            .order_by(col(AgentSettingsChange.id).desc())
        )
        if limit is not None:
            query = query.limit(limit)
        rows = list(s.execute(query).scalars())
    return [
        HistoryEntry(as_utc(r.changed_at), r.actor, r.level, r.target, r.field, r.old, r.new)
        for r in reversed(rows)
    ]
