"""Who is asking: the :class:`Principal` of a session, read afresh from the database on every request.

:func:`load_principal` re-reads the user, their tenant, their credential version and (for a
manager) the groups they manage, in two small queries by primary key. A session whose user is
gone or disabled, whose tenant is terminated, or whose credential version is older than the
stored one gets None: it ends on that request, whatever Redis still holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.models import Membership, Tenant, User
from storage.web_models import WebCredential
from web.sessions import SessionRecord

Role = str  # admin | manager | worker (storage.models.ROLES)


@dataclass(frozen=True)
class Principal:
    """A signed-in user, as every scoped query sees them."""

    user_id: int
    tenant: str
    login: str
    name: str
    role: Role
    language: str
    time_zone: str  # the user's, else the tenant's
    tenant_time_zone: str
    managed_groups: frozenset[int]  # the groups a manager manages (empty for other roles)
    version: int  # credential version


def load_principal(engine: Engine, record: SessionRecord) -> Principal | None:
    """The principal of ``record``, or None when the session may no longer be used."""
    with Session(engine) as s:
        row = s.execute(
            select(User, Tenant, col(WebCredential.version))
            .join(Tenant, col(User.tenant_id) == col(Tenant.id))
            .outerjoin(WebCredential, col(WebCredential.user_id) == col(User.id))
            .where(col(User.id) == record.user_id)
        ).first()
        if row is None:
            return None
        user, tenant, version = row
        current = 1 if version is None else int(version)
        if user.tenant_id != record.tenant or not user.enabled or tenant.terminated_at is not None:
            return None
        if record.version != current:
            return None
        groups: frozenset[int] = frozenset()
        if user.role == "manager":
            groups = frozenset(
                s.execute(
                    select(col(Membership.group_id)).where(
                        col(Membership.user_id) == record.user_id,
                        col(Membership.role) == "manager",
                        col(Membership.tenant_id) == record.tenant,
                    )
                ).scalars()
            )
    assert user.id is not None
    return Principal(
        user_id=user.id,
        tenant=user.tenant_id,
        login=user.login,
        name=user.name,
        role=user.role,
        language=user.language,
        time_zone=user.time_zone or tenant.time_zone,
        tenant_time_zone=tenant.time_zone,
        managed_groups=groups,
        version=current,
    )
