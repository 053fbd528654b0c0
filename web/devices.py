"""Agent devices as the console sees them: a repository scoped by :class:`~web.scope.Scope`.

:class:`Devices` reaches only the devices of the users the principal may see
(:meth:`Scope.visible_users`): an administrator the whole tenant (devices without a user too), a
manager those of themselves and their groups' members, a worker their own. A device out of scope
is indistinguishable from a missing one (None, 404 at the edge). The administrator's actions go
through :mod:`storage.accounts` (the one definition the command line shares), which audits them
(``agent.create``, ``agent.reissue``, ``agent.revoke``, ``agent.reassign``) with the actor and
the client address. A rotated or revoked token's open agent session is closed by the gateways'
revocation check (:mod:`realtime.revocation`) within ``TELEWORK_REVOCATION_CHECK_S``.

Online, last seen and agent version come from the gateways' live state in Redis
(:mod:`realtime.live_states`), joined to the database rows by :func:`joined` (pure).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import Select, select
from sqlmodel import Session, col

from core.ids import SLUG_RE
from realtime.live_states import agents_states
from realtime.protocol import LiveState
from storage import accounts
from storage.models import AgentDevice, User, as_utc
from web.audit import user_actor
from web.scope import MAX_PAGE, Scope, UserView

log = logging.getLogger(__name__)

Action = Literal["issue", "rotate", "revoke", "reassign"]
ACTIONS: tuple[Action, ...] = ("issue", "rotate", "revoke", "reassign")


class DeviceRefused(Exception):
    """An action refused: ``status`` (403, 404, 409, 422) and a message key of :mod:`web.texts_devices`."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class DeviceRow:
    """A device of the database, with its user."""

    id: str
    name: str
    user_id: int | None
    user_login: str | None
    user_name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class DeviceView:
    """A device as the console shows it: its row and its live state (``live_known`` False: Redis did
    not answer, so online, last seen and version are unknown)."""

    id: str
    name: str
    user_id: int | None
    user_login: str | None
    user_name: str | None
    created_at: datetime
    revoked_at: datetime | None
    live_known: bool
    online: bool | None  # None: unknown
    last_seen: datetime | None  # None: never seen, or unknown
    agent_version: str | None


def may(role: str, action: Action) -> bool:
    """Pure: whether ``role`` may do ``action`` to a device it can see (administrators only)."""
    return role == "admin" and action in ACTIONS


def plausible_id(value: str) -> bool:
    """Pure: whether ``value`` has the shape of a device (agent) id."""
    return SLUG_RE.fullmatch(value) is not None


def joined(row: DeviceRow, live: LiveState | None, known: bool) -> DeviceView:
    """Pure: ``row`` with its live state (``known`` False: the live state could not be read)."""
    seen = live if known else None
    return DeviceView(
        **row.__dict__,
        live_known=known,
        online=None if not known else (live is not None and live.online),
        last_seen=None if seen is None else seen.last_seen,
        agent_version=None if seen is None else seen.agent_version,
    )


def _row(device: AgentDevice, login: str | None, name: str | None) -> DeviceRow:
    return DeviceRow(
        id=device.id,
        name=device.name,
        user_id=device.user_id,
        user_login=login,
        user_name=name,
        created_at=as_utc(device.created_at),
        revoked_at=None if device.revoked_at is None else as_utc(device.revoked_at),
    )


class Devices:
    """The devices ``scope``'s principal may see, and the administrator's actions on them."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.principal = scope.principal
        self.engine = scope.engine

    def visible(self) -> Select[AgentDevice, str, str]:  # the login and name are None without a user
        """The principal's tenant's devices whose user they may see (an administrator: every one)."""
        query = (
            select(AgentDevice, col(User.login), col(User.name))
            .outerjoin(User, col(AgentDevice.user_id) == col(User.id))
            .where(col(AgentDevice.tenant_id) == self.principal.tenant)
        )
        if self.principal.role == "admin":
            return query
        users = self.scope.visible_users().with_only_columns(col(User.id))
        return query.where(col(AgentDevice.user_id).in_(users))

    def rows(self, limit: int = 50, offset: int = 0) -> list[DeviceRow]:
        """Visible devices, by id."""
        query = self.visible().order_by(col(AgentDevice.id)).limit(min(limit, MAX_PAGE)).offset(offset)
        with Session(self.engine) as s:
            return [_row(d, login, name) for d, login, name in s.execute(query).all()]

    def row(self, device_id: str) -> DeviceRow | None:
        """One visible device, or None (not visible, or no such device: the same answer)."""
        if not plausible_id(device_id):
            return None
        with Session(self.engine) as s:
            found = s.execute(self.visible().where(col(AgentDevice.id) == device_id)).first()
        return None if found is None else _row(*found)

    # ------------------------------------------------------------------ actions

    def _user(self, user_id: int) -> UserView:
        user = self.scope.user(user_id)
        if user is None:
            raise DeviceRefused(404, "devices_user_not_found")
        return user

    def _allowed(self, action: Action) -> None:
        if not may(self.principal.role, action):
            raise DeviceRefused(403, "forbidden")

    def _target(self, device_id: str, action: Action) -> DeviceRow:
        row = self.row(device_id)
        if row is None:
            raise DeviceRefused(404, "not_found")
        self._allowed(action)
        return row

    def _who(self, source: str) -> dict[str, str]:
        return {"actor": user_actor(self.principal.user_id), "source": source}

    def issue(self, device_id: str, user_id: int, source: str) -> tuple[DeviceRow, str]:
        """A new device of user ``user_id`` (who must be visible); returns it and its token, which
        only this answer ever shows."""
        user = self._user(user_id)
        self._allowed("issue")
        if not plausible_id(device_id):
            raise DeviceRefused(422, "devices_bad_id")
        if self._exists(device_id):
            raise DeviceRefused(409, "devices_taken")
        try:
            token = accounts.create_agent(
                self.engine, self.principal.tenant, device_id, user.login, **self._who(source)
            )
        except accounts.AccountError:  # created by a concurrent request in between
            raise DeviceRefused(409, "devices_taken") from None
        return self._after(device_id), token

    def _exists(self, device_id: str) -> bool:
        with Session(self.engine) as s:  # any tenant's: agent ids are unique across tenants
            return s.get(AgentDevice, device_id) is not None

    def rotate(self, device_id: str, source: str) -> tuple[DeviceRow, str]:
        """A new token for the device (the old one stops working, a revocation is lifted)."""
        self._target(device_id, "rotate")
        try:
            token = accounts.reissue_token(self.engine, device_id, **self._who(source))
        except accounts.AccountError:  # deleted in between
            raise DeviceRefused(404, "not_found") from None
        return self._after(device_id), token

    def revoke(self, device_id: str, source: str) -> tuple[DeviceRow, bool]:
        """Revoke the device's token; returns it and whether it was revoked now (False: already)."""
        self._target(device_id, "revoke")
        try:
            changed = accounts.revoke_agent(self.engine, device_id, **self._who(source))
        except accounts.AccountError:  # deleted in between
            raise DeviceRefused(404, "not_found") from None
        return self._after(device_id), changed

    def reassign(self, device_id: str, user_id: int, source: str) -> DeviceRow:
        """Give the device to user ``user_id`` of the same tenant (404 for anyone else)."""
        self._target(device_id, "reassign")
        self._user(user_id)
        try:
            accounts.reassign_agent(self.engine, device_id, user_id, **self._who(source))
        except accounts.AccountError:
            raise DeviceRefused(404, "devices_user_not_found") from None
        return self._after(device_id)

    def _after(self, device_id: str) -> DeviceRow:
        """The device as an action left it (404 should it be gone already)."""
        row = self.row(device_id)
        if row is None:
            raise DeviceRefused(404, "not_found")
        return row


async def with_live(redis: aioredis.Redis, tenant: str, rows: list[DeviceRow]) -> list[DeviceView]:
    """``rows`` of ``tenant`` with their live states (unknown, and logged, when Redis does not answer)."""
    if not rows:
        return []
    try:
        states = await agents_states(redis, tenant, [row.id for row in rows])
    except (RedisError, OSError) as exc:
        log.warning(
            "live state unreadable", extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}"}
        )
        return [joined(row, None, known=False) for row in rows]
    return [joined(row, states.get(row.id), known=True) for row in rows]
