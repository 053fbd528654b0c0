"""Groups of a tenant as the console sees and changes them: list, one group, create, rename, delete,
members and managers; every read through the caller's :class:`~web.scope.Scope`.

Which groups a caller sees is :meth:`web.scope.Scope.visible_groups` (an administrator every group
of the tenant, a manager the groups they manage, a worker none); the people shown in a group are
only those :meth:`~web.scope.Scope.visible_users` lets the caller see. Changes are the
administrator's (the edge answers 403 to anyone else); each is written with its audit entry
(``group.*`` of :class:`~storage.audit_trail.AuditAction`, target ``group:<id>``, old -> new) in
one transaction. Group names are not personal data (``storage.personal_registry``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from storage import account_rules as rules
from storage.agent_settings_models import GroupAgentSettings
from storage.audit_trail import AuditAction, audit
from storage.models import Group, Membership, User
from web.audit import at
from web.scope import Scope
from web.user_admin import Actor

MAX_GROUP_NAME = 120  # as the tw_group.name column allows
ROLES = ("member", "manager")


class GroupError(ValueError):
    """A group change that cannot be made; ``code`` is its message key (``groups_*``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Person:
    id: int
    login: str
    name: str


@dataclass(frozen=True)
class GroupSummary:
    id: int
    name: str
    members: int  # how many members the caller may see


@dataclass(frozen=True)
class GroupView:
    id: int
    name: str
    members: tuple[Person, ...]
    managers: tuple[Person, ...]


def group_name(value: str) -> str:
    """Pure: a group name, stripped: 1-120 characters, no control or invisible characters."""
    clean = rules.display_name("group name", value)
    if len(clean) > MAX_GROUP_NAME:
        raise rules.AccountError(f"group name: expected 1-{MAX_GROUP_NAME} characters, got {len(clean)}")
    return clean


class Groups:
    """The groups ``scope``'s principal may see, and an administrator's changes to them."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.tenant = scope.principal.tenant

    def summaries(self) -> list[GroupSummary]:
        """The visible groups, by name, with how many visible members each has."""
        visible = self.scope.visible_users().with_only_columns(col(User.id))
        with Session(self.scope.engine) as s:
            groups = list(s.execute(self.scope.visible_groups().order_by(col(Group.name))).scalars())
            counts = dict(
                s.execute(
                    select(col(Membership.group_id), func.count())
                    .where(
                        col(Membership.tenant_id) == self.tenant,
                        col(Membership.role) == "member",
                        col(Membership.user_id).in_(visible),
                    )
                    .group_by(col(Membership.group_id))
                ).all()
            )
        return [GroupSummary(g.id or 0, g.name, int(counts.get(g.id, 0))) for g in groups]

    def get(self, group_id: int) -> GroupView | None:
        """One visible group with its visible members and managers, or None (not visible or no such group)."""
        with Session(self.scope.engine) as s:
            group = self._group(s, group_id)
            if group is None:
                return None
            people = s.execute(
                self.scope.visible_users()
                .with_only_columns(col(User.id), col(User.login), col(User.name), col(Membership.role))
                .join(Membership, col(Membership.user_id) == col(User.id))
                .where(col(Membership.group_id) == group_id)
                .order_by(col(User.login))
            ).all()
        members = tuple(Person(int(i), str(lg), str(n)) for i, lg, n, r in people if r == "member")
        managers = tuple(Person(int(i), str(lg), str(n)) for i, lg, n, r in people if r == "manager")
        return GroupView(group_id, group.name, members, managers)

    def _group(self, s: Session, group_id: int) -> Group | None:
        found: Group | None = s.execute(
            self.scope.visible_groups().where(col(Group.id) == group_id)
        ).scalar_one_or_none()
        return found

    def create(self, name: str, who: Actor) -> int:
        """A new group of the tenant; returns its id. GroupError ``groups_name_taken``."""
        clean = group_name(name)
        with Session(self.scope.engine) as s:
            self._name_free(s, clean)
            group = Group(tenant_id=self.tenant, name=clean, created_at=at(who.now))
            s.add(group)
            try:
                s.flush()
                assert group.id is not None
                audit(
                    s, AuditAction.GROUP_CREATE, actor=who.actor, source=who.source,
                    target=f"group:{group.id}", tenant_id=self.tenant, old={}, new={"name": clean},
                    at=at(who.now),
                )  # fmt: skip
                s.commit()
            except IntegrityError:  # created at the same moment by another request
                s.rollback()
                raise _taken(clean) from None
            return group.id

    def rename(self, group_id: int, name: str, who: Actor) -> bool:
        """Rename a visible group; False when it is not visible. Renaming to its own name changes nothing."""
        clean = group_name(name)
        with Session(self.scope.engine) as s:
            group = self._group(s, group_id)
            if group is None:
                return False
            if group.name == clean:
                return True
            self._name_free(s, clean)
            old = group.name
            group.name = clean
            s.add(group)
            audit(
                s, AuditAction.GROUP_RENAME, actor=who.actor, source=who.source, target=f"group:{group_id}",
                tenant_id=self.tenant, old={"name": old}, new={"name": clean}, at=at(who.now),
            )  # fmt: skip
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                raise _taken(clean) from None
        return True

    def delete(self, group_id: int, who: Actor) -> bool:
        """Delete a visible group with its memberships and its agent settings; False when not visible."""
        with Session(self.scope.engine) as s:
            group = self._group(s, group_id)
            if group is None:
                return False
            ended = s.execute(delete(Membership).where(col(Membership.group_id) == group_id))
            s.execute(delete(GroupAgentSettings).where(col(GroupAgentSettings.group_id) == group_id))
            audit(
                s, AuditAction.GROUP_DELETE, actor=who.actor, source=who.source, target=f"group:{group_id}",
                tenant_id=self.tenant, old={"name": group.name}, new={"name": None}, at=at(who.now),
                memberships=int(ended.rowcount),  # type: ignore[attr-defined]
            )  # fmt: skip
            s.delete(group)
            try:
                s.commit()
            except IntegrityError:  # another area's table still refers to the group
                s.rollback()
                raise GroupError("groups_in_use", f"group {group_id} is still in use") from None
        return True

    def set_person(self, group_id: int, user_id: int, role: str, present: bool, who: Actor) -> bool | None:
        """Add (``present``) or remove ``user_id`` as ``role`` (member | manager) of a visible group.

        None: the group or the user is not visible; else whether something changed. GroupError
        ``groups_not_manager`` when a manager is to be assigned who does not have the manager role."""
        assert role in ROLES
        with Session(self.scope.engine) as s:
            group = self._group(s, group_id)
            user = s.execute(self.scope.visible_users().where(col(User.id) == user_id)).scalar_one_or_none()
            if group is None or user is None:
                return None
            if present and role == "manager" and user.role != "manager":
                raise GroupError(
                    "groups_not_manager", f"user {user_id} has the role {user.role}, not manager"
                )
            row = s.get(Membership, (group_id, user_id, role))
            if (row is not None) == present:
                return False
            if present:
                s.add(Membership(group_id=group_id, user_id=user_id, role=role, tenant_id=self.tenant,
                                 created_at=at(who.now)))  # fmt: skip
            else:
                s.delete(row)
            action = {
                ("member", True): AuditAction.GROUP_MEMBER_ADD,
                ("member", False): AuditAction.GROUP_MEMBER_REMOVE,
                ("manager", True): AuditAction.GROUP_MANAGER_ADD,
                ("manager", False): AuditAction.GROUP_MANAGER_REMOVE,
            }[(role, present)]
            audit(
                s, action, actor=who.actor, source=who.source, target=f"group:{group_id}",
                tenant_id=self.tenant,
                old={role: None if present else user_id}, new={role: user_id if present else None},
                at=at(who.now), user_id=user_id,
            )  # fmt: skip
            try:
                s.commit()
            except IntegrityError:  # added at the same moment by another request
                s.rollback()
                return False
        return True

    def of_user(self, user_id: int) -> list[tuple[GroupSummary, str]]:
        """The visible groups ``user_id`` is in, with their role there (member | manager), by name."""
        with Session(self.scope.engine) as s:
            rows = s.execute(
                self.scope.visible_groups()
                .with_only_columns(col(Group.id), col(Group.name), col(Membership.role))
                .join(Membership, col(Membership.group_id) == col(Group.id))
                .where(col(Membership.user_id) == user_id)
                .order_by(col(Group.name), col(Membership.role))
            ).all()
        return [(GroupSummary(int(i), str(n), 0), str(r)) for i, n, r in rows]

    def _name_free(self, s: Session, name: str) -> None:
        taken = s.execute(
            select(col(Group.id)).where(col(Group.tenant_id) == self.tenant, col(Group.name) == name)
        ).first()
        if taken is not None:
            raise _taken(name)


def _taken(name: str) -> GroupError:
    return GroupError("groups_name_taken", f"a group named {name!r} already exists")
