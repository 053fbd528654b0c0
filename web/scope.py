"""The one place a console query is scoped: :class:`Scope` built from the signed-in principal.

Every handler reads through a ``Scope(principal)``; each of its queries starts from
:meth:`Scope.visible_users`, which always filters the principal's tenant and then narrows by role:
an administrator sees the whole tenant, a manager themselves and the members of the groups they
manage, a worker only themselves. Something out of scope is indistinguishable from something that
does not exist (None, and 404 at the edge), so another tenant's ids reveal nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.account_rules import refused_character
from storage.models import AgentDevice, Group, Membership, User
from web.principal import Principal

MAX_PAGE = 200  # users per list request
MAX_QUERY = 120  # characters of a search


@dataclass(frozen=True)
class UserView:
    """A user as the console shows them."""

    id: int
    login: str
    name: str
    role: str
    enabled: bool
    language: str
    time_zone: str | None  # None: the tenant's
    groups: tuple[str, ...]  # names of the groups they are a member of


def like_pattern(text: str) -> str:
    """Pure: a case-insensitive *contains* LIKE pattern for ``text``, its wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Scope:
    """What ``principal`` may see; the only way handlers reach users."""

    def __init__(self, principal: Principal, engine: Engine) -> None:
        self.principal = principal
        self.engine = engine

    def visible_users(self) -> Select[User]:
        """The users of the principal's tenant that their role lets them see."""
        p = self.principal
        query = select(User).where(col(User.tenant_id) == p.tenant)
        if p.role == "admin":
            return query
        if p.role == "manager" and p.managed_groups:
            members = (
                select(col(Membership.user_id))
                .where(
                    col(Membership.tenant_id) == p.tenant,
                    col(Membership.role) == "member",
                    col(Membership.group_id).in_(sorted(p.managed_groups)),
                )
                .correlate(None)
            )  # never tied to a Membership of a query this one is part of
            return query.where(or_(col(User.id) == p.user_id, col(User.id).in_(members)))
        return query.where(col(User.id) == p.user_id)

    def visible_groups(self) -> Select[Group]:
        """The groups of the principal's tenant that their role lets them see: an administrator all,
        a manager those they manage, a worker none."""
        p = self.principal
        query = select(Group).where(col(Group.tenant_id) == p.tenant)
        if p.role == "admin":
            return query
        if p.role == "manager" and p.managed_groups:
            return query.where(col(Group.id).in_(sorted(p.managed_groups)))
        return query.where(false())

    def visible_agents(self) -> frozenset[str]:
        """Ids of the agent devices (revoked ones too) whose live state the principal may see: an
        administrator all of the tenant's (unassigned ones too), others those of the visible users."""
        query = select(col(AgentDevice.id)).where(col(AgentDevice.tenant_id) == self.principal.tenant)
        if self.principal.role != "admin":
            users = self.visible_users().with_only_columns(col(User.id))
            query = query.where(col(AgentDevice.user_id).in_(users))
        with Session(self.engine) as s:
            return frozenset(str(agent) for agent in s.execute(query).scalars())

    def users(self, q: str = "", limit: int = 50, offset: int = 0) -> list[UserView]:
        """Visible users whose login or name contains ``q`` (any case), by login."""
        if refused_character(q) is not None:  # no login or name holds one (storage.account_rules)
            return []
        query = self.visible_users()
        if q:
            pattern = like_pattern(q[:MAX_QUERY])
            query = query.where(
                or_(
                    func.lower(col(User.login)).like(pattern, escape="\\"),
                    func.lower(col(User.name)).like(pattern, escape="\\"),
                )
            )
        query = query.order_by(col(User.login)).limit(min(limit, MAX_PAGE)).offset(offset)
        with Session(self.engine) as s:
            rows = list(s.execute(query).scalars())
            groups = self._groups(s, [u.id for u in rows if u.id is not None])
        return [_view(u, groups.get(u.id or 0, ())) for u in rows]

    def user(self, user_id: int) -> UserView | None:
        """One visible user, or None (not visible, or no such user: the same answer)."""
        with Session(self.engine) as s:
            row = s.execute(self.visible_users().where(col(User.id) == user_id)).scalar_one_or_none()
            if row is None:
                return None
            return _view(row, self._groups(s, [user_id]).get(user_id, ()))

    def user_id_of(self, login: str) -> int | None:
        """The id of the visible user whose login is exactly ``login``, or None."""
        query = self.visible_users().with_only_columns(col(User.id)).where(col(User.login) == login)
        with Session(self.engine) as s:
            found = s.execute(query).scalar_one_or_none()
        return None if found is None else int(found)

    def _groups(self, s: Session, user_ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not user_ids:
            return {}
        rows = s.execute(
            select(col(Membership.user_id), col(Group.name))
            .join(Group, col(Group.id) == col(Membership.group_id))
            .where(
                col(Membership.tenant_id) == self.principal.tenant,
                col(Membership.role) == "member",
                col(Membership.user_id).in_(user_ids),
            )
            .order_by(col(Group.name))
        ).all()
        out: dict[int, list[str]] = {}
        for user_id, name in rows:
            out.setdefault(int(user_id), []).append(str(name))
        return {k: tuple(v) for k, v in out.items()}


def _view(user: User, groups: tuple[str, ...]) -> UserView:
    assert user.id is not None
    return UserView(
        id=user.id,
        login=user.login,
        name=user.name,
        role=user.role,
        enabled=user.enabled,
        language=user.language,
        time_zone=user.time_zone,
        groups=groups,
    )
