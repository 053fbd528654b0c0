"""Groups through the API: an administrator creates, renames, deletes, adds and removes members and
managers (audited); a manager sees only the groups they manage and their members; a worker none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.models import Membership
from tests.users_world import group_id
from tests.web_world import World, make_world

API = "/api/v1/groups"


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def group_audit(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, target, detail) of every ``group.*`` entry, oldest first."""
    with Session(world.engine) as s:
        rows = s.execute(
            select(col(AuditEntry.action), col(AuditEntry.target), col(AuditEntry.detail))
            .where(col(AuditEntry.action).startswith("group."))
            .order_by(col(AuditEntry.seq))
        ).all()
    return [(str(a), str(t), dict(d)) for a, t, d in rows]


class Admin:
    """alice's API calls with her CSRF token."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.headers = {"X-CSRF-Token": csrf}

    async def send(self, method: str, path: str, json: object = None) -> httpx.Response:
        return await self.client.request(method, path, json=json, headers=self.headers)


async def admin(world: World, login: str = "alice") -> Admin:
    return Admin(*await world.signed_in(login, "192.0.2.9"))


async def test_an_administrator_creates_renames_and_deletes_a_group_audited(world: World) -> None:
    """201 with the group, 200 renamed, 409 for a taken name, 204 deleted (memberships too), 404 after."""
    alice = await admin(world)
    made = await alice.send("POST", API, {"name": "  design  "})
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    assert made.json() == {"id": gid, "name": "design", "members": [], "managers": []}
    assert (await alice.send("PUT", f"{API}/{gid}/members/{world.ids['wendy']}")).status_code == 204
    renamed = await alice.send("PATCH", f"{API}/{gid}", {"name": "Design Team"})
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Design Team")
    taken = await alice.send("PATCH", f"{API}/{gid}", {"name": "sales"})
    assert (taken.status_code, taken.json()["error"]) == (409, "groups_name_taken")
    again = await alice.send("POST", API, {"name": "sales"})
    assert again.status_code == 409
    assert (await alice.send("DELETE", f"{API}/{gid}")).status_code == 204
    assert (await alice.send("GET", f"{API}/{gid}")).status_code == 404
    with Session(world.engine) as s:
        left = s.execute(select(Membership).where(col(Membership.group_id) == gid)).all()
    assert left == []
    target = f"group:{gid}"
    assert [(a, t, d.get("changes")) for a, t, d in group_audit(world)] == [
        ("group.create", target, {"name": [None, "design"]}),
        ("group.member_add", target, {"member": [None, world.ids["wendy"]]}),
        ("group.rename", target, {"name": ["design", "Design Team"]}),
        ("group.delete", target, {"name": ["Design Team", None]}),
    ]
    assert {d["source"] for _, _, d in group_audit(world)} == {"192.0.2.9"}
    assert group_audit(world)[-1][2]["memberships"] == 1


async def test_a_manager_assigned_a_group_sees_its_members_and_loses_them_when_removed(world: World) -> None:
    """mika sees wendy only while she manages ops; a worker cannot be made a manager (422)."""
    alice = await admin(world)
    ops = group_id(world, "acme", "ops")
    mika, _ = await world.signed_in("mika")
    assert (await mika.get(f"/api/v1/users/{world.ids['wendy']}")).status_code == 404
    assert (await mika.get(f"{API}/{ops}")).status_code == 404
    assert (await alice.send("PUT", f"{API}/{ops}/managers/{world.ids['mika']}")).status_code == 204
    assert (await mika.get(f"/api/v1/users/{world.ids['wendy']}")).status_code == 200
    seen = (await mika.get(f"{API}/{ops}")).json()
    assert [p["login"] for p in seen["members"]] == ["wendy"]
    assert [p["login"] for p in seen["managers"]] == ["mika"]
    listed = (await mika.get(API)).json()["groups"]
    assert [(g["name"], g["members"]) for g in listed] == [("ops", 1), ("sales", 1)]
    assert (await alice.send("DELETE", f"{API}/{ops}/managers/{world.ids['mika']}")).status_code == 204
    assert (await mika.get(f"/api/v1/users/{world.ids['wendy']}")).status_code == 404
    worker = await alice.send("PUT", f"{API}/{ops}/managers/{world.ids['wataru']}")
    assert (worker.status_code, worker.json()["error"]) == (422, "groups_not_manager")


async def test_members_are_added_and_removed_once_and_each_change_is_audited(world: World) -> None:
    """A repeated add or remove answers 204 and writes nothing; the user's groups follow."""
    alice = await admin(world)
    ops = group_id(world, "acme", "ops")
    wataru = world.ids["wataru"]
    for _ in range(2):
        assert (await alice.send("PUT", f"{API}/{ops}/members/{wataru}")).status_code == 204
    assert (await alice.send("GET", f"/api/v1/users/{wataru}")).json()["groups"] == ["ops", "sales"]
    for _ in range(2):
        assert (await alice.send("DELETE", f"{API}/{ops}/members/{wataru}")).status_code == 204
    assert (await alice.send("GET", f"/api/v1/users/{wataru}")).json()["groups"] == ["sales"]
    assert [a for a, _, _ in group_audit(world)] == ["group.member_add", "group.member_remove"]
    beta_user = await alice.send("PUT", f"{API}/{ops}/members/{world.ids['bill']}")
    assert beta_user.status_code == 404  # another tenant's user reads as missing


async def test_a_manager_changes_nothing_a_worker_sees_no_group_and_beta_sees_none_of_acme(
    world: World,
) -> None:
    """mika: 403 on her group's changes; wataru: empty list, 404 on an id; bob: 404 on acme's group."""
    sales = group_id(world, "acme", "sales")
    mika, csrf = await world.signed_in("mika")
    h = {"X-CSRF-Token": csrf}
    assert (await mika.patch(f"{API}/{sales}", json={"name": "x"}, headers=h)).status_code == 403
    assert (await mika.delete(f"{API}/{sales}", headers=h)).status_code == 403
    assert (await mika.put(f"{API}/{sales}/members/{world.ids['wataru']}", headers=h)).status_code == 403
    assert (await mika.post(API, json={"name": "mine"}, headers=h)).status_code == 403
    wataru, _ = await world.signed_in("wataru")
    assert (await wataru.get(API)).json() == {"groups": []}
    assert (await wataru.get(f"{API}/{sales}")).status_code == 404
    bob, bcsrf = await world.signed_in("bob")
    missing = await bob.get(f"{API}/999999")
    answer = await bob.get(f"{API}/{sales}")
    assert (answer.status_code, answer.json()) == (missing.status_code, missing.json())
    assert [g["name"] for g in (await bob.get(API)).json()["groups"]] == ["field"]
    rename = await bob.patch(f"{API}/{sales}", json={"name": "taken over"}, headers={"X-CSRF-Token": bcsrf})
    assert rename.status_code == 404
    assert group_audit(world) == []


async def test_a_group_name_is_checked_like_any_name(world: World) -> None:
    """Blank, too long, control characters and unknown fields are refused with what was expected."""
    alice = await admin(world)
    blank = await alice.send("POST", API, {"name": "   "})
    assert (
        blank.json()["message"] == "This value cannot be used: group name: expected 1-200 characters, got 0"
    )
    long = await alice.send("POST", API, {"name": "x" * 121})
    assert long.status_code == 422 and long.json()["details"][0]["where"] == "body.name"
    control = await alice.send("POST", API, {"name": "a\u202eb"})
    assert control.json()["message"].startswith(
        "This value cannot be used: group name: expected no control characters"
    )
    extra = await alice.send("POST", API, {"name": "a", "tenant": "beta"})
    assert extra.status_code == 422 and extra.json()["details"][0]["where"] == "body.tenant"
