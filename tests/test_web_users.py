"""An administrator's user changes through the API: create with a set-up link, edit, enable/disable,
password reset; the tenant's last administrator kept; managers and workers refused; all audited."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.models import User
from tests.web_world import BASE, PASSWORD, World, make_world
from web import keys
from web.user_admin import admin_refusal

NEW = "a brand new password"
LINK = re.compile(re.escape(BASE) + r"/setup#([A-Za-z0-9_-]{43})")


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def audit_of(world: World, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, target, detail) of every entry of ``action``, oldest first."""
    with Session(world.engine) as s:
        rows = s.execute(
            select(col(AuditEntry.actor), col(AuditEntry.target), col(AuditEntry.detail))
            .where(col(AuditEntry.action) == action)
            .order_by(col(AuditEntry.seq))
        ).all()
    return [(str(a), str(t), dict(d)) for a, t, d in rows]


async def set_up(world: World, code: str, password: str = NEW) -> httpx.Response:
    client = world.client()
    page = await client.get("/setup")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)
    assert pre is not None
    return await client.post("/setup", data={"code": code, "password": password, "pre": pre.group(1)})


async def sign_in(world: World, login: str, password: str, tenant: str = "acme") -> int:
    answer = await world.client().post(
        "/api/v1/session", json={"tenant": tenant, "login": login, "password": password}
    )
    return answer.status_code


async def test_an_administrator_creates_a_user_who_sets_a_password_with_the_link(world: World) -> None:
    """201 with the user and a one-time link; the link sets the password; user.create audited with source."""
    alice, csrf = await world.signed_in("alice", "192.0.2.7")
    answer = await alice.post(
        "/api/v1/users",
        json={"login": "hana", "name": "Hana Sato", "role": "manager", "language": "en", "time_zone": "UTC"},
        headers={"X-CSRF-Token": csrf},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    match = LINK.fullmatch(body["setup_link"])
    assert match is not None and body["expires_in_s"] == world.settings.web_setup_code_ttl_s
    user = body["user"]
    assert {k: user[k] for k in ("login", "name", "role", "enabled", "language", "time_zone", "groups")} == {
        "login": "hana", "name": "Hana Sato", "role": "manager", "enabled": True, "language": "en",
        "time_zone": "UTC", "groups": [],
    }  # fmt: skip
    assert "password" not in answer.text
    assert await sign_in(world, "hana", NEW) == 401  # no password before the link is used
    assert (await set_up(world, match.group(1))).status_code == 200
    assert await sign_in(world, "hana", NEW) == 200
    ((actor, target, detail),) = audit_of(world, "user.create")[-1:]
    assert (actor, target, detail["source"]) == (
        f"user:{world.ids['alice']}",
        f"user:{user['id']}",
        "192.0.2.7",
    )
    issued = audit_of(world, "web.setup_code_issue")[-1]
    assert issued[:2] == (f"user:{world.ids['alice']}", f"user:{user['id']}")
    assert match.group(1) not in str(audit_of(world, "web.setup_code_issue"))


async def test_creation_refuses_a_taken_login_and_bad_values_naming_what_was_expected(world: World) -> None:
    """409 for a login in use; 422 for an unknown time zone, a role out of the list, an unknown field."""
    alice, csrf = await world.signed_in("alice")
    headers = {"X-CSRF-Token": csrf}

    async def create(body: dict[str, object]) -> httpx.Response:
        return await alice.post("/api/v1/users", json=body, headers=headers)

    taken = await create({"login": "wendy", "name": "Another Wendy"})
    assert (taken.status_code, taken.json()["error"]) == (409, "users_login_taken")
    zone = await create({"login": "zed", "name": "Zed", "time_zone": "Mars/Olympus"})
    assert zone.status_code == 422
    assert zone.json()["message"] == (
        "This value cannot be used: time zone: expected an IANA time zone name such as Asia/Tokyo or UTC, "
        "got 'Mars/Olympus'"
    )
    role = await create({"login": "zed", "name": "Zed", "role": "owner"})
    assert role.status_code == 422 and role.json()["details"][0]["where"] == "body.role"
    extra = await create({"login": "zed", "name": "Zed", "password": "x"})
    assert extra.status_code == 422 and extra.json()["details"][0]["where"] == "body.password"
    spaced = await create({"login": "z e d", "name": "Zed"})
    assert spaced.json()["message"] == "This value cannot be used: login: expected no spaces, got 'z e d'"


async def test_an_edit_changes_exactly_the_fields_sent_and_is_audited_old_to_new(world: World) -> None:
    """PATCH name, role, language, time zone; null time zone is the tenant's again; old -> new audited."""
    alice, csrf = await world.signed_in("alice", "192.0.2.8")
    wendy = world.ids["wendy"]
    headers = {"X-CSRF-Token": csrf}
    answer = await alice.patch(
        f"/api/v1/users/{wendy}",
        json={"name": "Wendy Ono", "role": "manager", "language": "en", "time_zone": "Europe/Paris"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert (got["name"], got["role"], got["language"], got["time_zone"]) == (
        "Wendy Ono", "manager", "en", "Europe/Paris",
    )  # fmt: skip
    (_, target, detail) = audit_of(world, "user.update")[-1]
    assert (target, detail["source"], detail["withheld"]) == (f"user:{wendy}", "192.0.2.8", ["name"])
    assert detail["changes"] == {
        "language": ["ja", "en"], "role": ["worker", "manager"], "time_zone": [None, "Europe/Paris"],
    }  # fmt: skip
    back = await alice.patch(f"/api/v1/users/{wendy}", json={"time_zone": None}, headers=headers)
    assert (back.status_code, back.json()["time_zone"], back.json()["name"]) == (200, None, "Wendy Ono")
    null_name = await alice.patch(f"/api/v1/users/{wendy}", json={"name": None}, headers=headers)
    assert null_name.json()["message"] == "This value cannot be used: name: expected a value, got null"


async def test_disabling_a_user_ends_their_sessions_at_once_and_enabling_lets_them_in(world: World) -> None:
    """enabled=false: the user's sessions leave Redis in that request, sign-in fails; true: it works again."""
    wendy_client, _ = await world.signed_in("wendy")
    wendy = world.ids["wendy"]
    index = keys.user_sessions_key("acme", wendy)
    assert await world.redis.scard(index) == 1
    alice, csrf = await world.signed_in("alice")
    off = await alice.patch(f"/api/v1/users/{wendy}", json={"enabled": False}, headers={"X-CSRF-Token": csrf})
    assert (off.status_code, off.json()["enabled"]) == (200, False)
    assert await world.redis.scard(index) == 0
    assert (await wendy_client.get("/api/v1/me")).status_code == 401
    assert await sign_in(world, "wendy", PASSWORD) == 401
    on = await alice.patch(f"/api/v1/users/{wendy}", json={"enabled": True}, headers={"X-CSRF-Token": csrf})
    assert (on.status_code, on.json()["enabled"]) == (200, True)
    assert await sign_in(world, "wendy", PASSWORD) == 200
    changes = [d["changes"] for _, t, d in audit_of(world, "user.update") if t == f"user:{wendy}"]
    assert changes == [{"enabled": [True, False]}, {"enabled": [False, True]}]


async def test_the_last_enabled_administrator_cannot_demote_or_disable_themselves(world: World) -> None:
    """409 with the reason while alice is acme's only administrator; with mika one too, she may step down."""
    alice, csrf = await world.signed_in("alice")
    headers = {"X-CSRF-Token": csrf}
    me = f"/api/v1/users/{world.ids['alice']}"
    demote = await alice.patch(me, json={"role": "manager"}, headers=headers)
    assert (demote.status_code, demote.json()["error"]) == (409, "users_last_admin_demote")
    assert demote.json()["message"].startswith("This is the organisation's last enabled administrator")
    disable = await alice.patch(me, json={"enabled": False}, headers=headers)
    assert (disable.status_code, disable.json()["error"]) == (409, "users_last_admin_disable")
    renamed = await alice.patch(me, json={"name": "Alice A", "role": "admin"}, headers=headers)
    assert renamed.status_code == 200
    promote = await alice.patch(f"/api/v1/users/{world.ids['mika']}", json={"role": "admin"}, headers=headers)
    assert promote.status_code == 200
    stepped = await alice.patch(me, json={"role": "worker"}, headers=headers)
    assert (stepped.status_code, stepped.json()["role"]) == (200, "worker")
    again = await alice.patch(me, json={"role": "admin"}, headers=headers)
    assert again.status_code == 403  # a worker now: the change takes effect on the next request


async def test_a_password_reset_ends_the_users_sessions_and_the_old_password(world: World) -> None:
    """201 with a new link; wataru's session ends, his old password fails, the link sets a new one."""
    wataru_client, _ = await world.signed_in("wataru")
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    answer = await alice.post(f"/api/v1/users/{wataru}/setup-link", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 201
    match = LINK.fullmatch(answer.json()["setup_link"])
    assert match is not None
    assert (await wataru_client.get("/api/v1/me")).status_code == 401
    assert await world.redis.scard(keys.user_sessions_key("acme", wataru)) == 0
    assert await sign_in(world, "wataru", PASSWORD) == 401
    assert (await set_up(world, match.group(1))).status_code == 200
    assert await sign_in(world, "wataru", NEW) == 200
    assert audit_of(world, "web.password_reset") == [
        (f"user:{world.ids['alice']}", f"user:{wataru}", {"source": "192.0.2.10"})
    ]
    own = await alice.post(f"/api/v1/users/{world.ids['alice']}/setup-link", headers={"X-CSRF-Token": csrf})
    assert (own.status_code, own.json()["error"]) == (409, "users_reset_self")
    assert (await alice.get("/api/v1/me")).status_code == 200


async def test_managers_and_workers_see_but_cannot_change_and_out_of_scope_is_404(world: World) -> None:
    """mika: 403 on wataru (in her group), 404 on wendy; wataru: 403 on himself; nothing changed."""
    mika, csrf = await world.signed_in("mika")
    wataru, wendy = world.ids["wataru"], world.ids["wendy"]
    h = {"X-CSRF-Token": csrf}
    assert (await mika.patch(f"/api/v1/users/{wataru}", json={"name": "X"}, headers=h)).status_code == 403
    assert (await mika.patch(f"/api/v1/users/{wendy}", json={"name": "X"}, headers=h)).status_code == 404
    assert (await mika.post(f"/api/v1/users/{wataru}/setup-link", headers=h)).status_code == 403
    assert (await mika.post("/api/v1/users", json={"login": "q", "name": "Q"}, headers=h)).status_code == 403
    worker, wcsrf = await world.signed_in("wataru")
    mine = await worker.patch(
        f"/api/v1/users/{wataru}", json={"role": "admin"}, headers={"X-CSRF-Token": wcsrf}
    )
    assert mine.status_code == 403
    assert audit_of(world, "user.update") == []
    bob, bcsrf = await world.signed_in("bob")
    cross = await bob.patch(f"/api/v1/users/{wataru}", json={"name": "X"}, headers={"X-CSRF-Token": bcsrf})
    assert (cross.status_code, cross.json()["error"]) == (404, "not_found")


def test_admin_refusal_keeps_one_enabled_administrator() -> None:
    """Only demoting or disabling the last enabled administrator is refused, and named."""
    assert admin_refusal("admin", True, {"role": "worker"}, 1) == "demote"
    assert admin_refusal("admin", True, {"enabled": False}, 1) == "disable"
    assert admin_refusal("admin", True, {"role": "admin", "enabled": True, "name": "A"}, 1) is None
    assert admin_refusal("admin", True, {"role": "worker"}, 2) is None
    assert admin_refusal("admin", False, {"role": "worker"}, 1) is None  # a disabled one is not counted
    assert admin_refusal("manager", True, {"enabled": False}, 1) is None


@given(
    role=st.sampled_from(["admin", "manager", "worker"]),
    enabled=st.booleans(),
    new_role=st.sampled_from([None, "admin", "manager", "worker"]),
    new_enabled=st.sampled_from([None, True, False]),
    admins=st.integers(min_value=1, max_value=5),
)
def test_admin_refusal_never_leaves_zero_enabled_administrators(
    role: str, enabled: bool, new_role: str | None, new_enabled: bool | None, admins: int
) -> None:
    """Whatever the change, if it is allowed the tenant still has an enabled administrator afterwards."""
    changes: dict[str, object] = {}
    if new_role is not None:
        changes["role"] = new_role
    if new_enabled is not None:
        changes["enabled"] = new_enabled
    counted = role == "admin" and enabled
    others = admins - 1 if counted else admins
    after = (changes.get("role", role) == "admin") and bool(changes.get("enabled", enabled))
    if admin_refusal(role, enabled, changes, admins) is None:
        assert others + int(after) >= 1 or not counted
    else:
        assert counted and others == 0 and not after


async def test_two_administrators_demoting_each_other_at_once_leave_one(world: World) -> None:
    """PostgreSQL: alice and mika (both administrators) demote each other together: one 200, one 409."""
    if (world.settings.database_url or "sqlite").startswith("sqlite"):
        pytest.skip("SQLite has no row locks: the check and the change are two steps there")
    alice, csrf = await world.signed_in("alice")
    promote = await alice.patch(
        f"/api/v1/users/{world.ids['mika']}", json={"role": "admin"}, headers={"X-CSRF-Token": csrf}
    )
    assert promote.status_code == 200
    mika, mcsrf = await world.signed_in("mika")
    answers = await asyncio.gather(
        alice.patch(
            f"/api/v1/users/{world.ids['mika']}", json={"role": "worker"}, headers={"X-CSRF-Token": csrf}
        ),
        mika.patch(
            f"/api/v1/users/{world.ids['alice']}", json={"role": "worker"}, headers={"X-CSRF-Token": mcsrf}
        ),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    with Session(world.engine) as s:
        admins = s.execute(
            select(col(User.login)).where(col(User.tenant_id) == "acme", col(User.role) == "admin")
        ).all()
    assert len(admins) == 1
