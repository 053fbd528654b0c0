"""Fresh objects of tenant acme for the users and groups tests: a user in a group, a group with people."""

from __future__ import annotations

import itertools

from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

from storage.accounts import create_user
from storage.models import Group, Membership, utcnow
from tests.web_world import World

_serial = itertools.count(1)
FRESH = "fresh"  # every login and group name made here starts so


def fresh_name(kind: str = "", prefix: str = FRESH) -> str:
    """A login or group name no one has yet (``prefix``: what it starts with)."""
    return f"{prefix}{kind}{next(_serial)}"


def group_id(world: World, tenant: str, name: str) -> int:
    with Session(world.engine) as s:
        found = s.execute(
            select(col(Group.id)).where(col(Group.tenant_id) == tenant, col(Group.name) == name)
        ).scalar_one()
    return int(found)


def _join(world: World, tenant: str, group: int, user_id: int, role: str) -> None:
    with Session(world.engine) as s:
        s.add(Membership(group_id=group, user_id=user_id, role=role, tenant_id=tenant, created_at=utcnow()))
        s.commit()


async def fresh_user(world: World, group: str | int | None = "sales", role: str = "worker") -> int:
    """A new user of acme (a member of ``group``, a name or an id); their id."""

    def make() -> int:
        user_id = create_user(world.engine, "acme", fresh_name("user"), "Fresh Person", role)
        if group is not None:
            gid = group if isinstance(group, int) else group_id(world, "acme", group)
            _join(world, "acme", gid, user_id, "member")
        return user_id

    return await run_in_threadpool(make)


async def fresh_group(
    world: World, managers: tuple[str, ...] = ("mika",), members: tuple[str, ...] = ("wataru",)
) -> int:
    """A new group of acme managed by ``managers`` with ``members``; its id."""

    def make() -> int:
        with Session(world.engine) as s:
            row = Group(tenant_id="acme", name=fresh_name("group"), created_at=utcnow())
            s.add(row)
            s.commit()
            assert row.id is not None
            new = row.id
        for login in managers:
            _join(world, "acme", new, world.ids[login], "manager")
        for login in members:
            _join(world, "acme", new, world.ids[login], "member")
        return new

    return await run_in_threadpool(make)
