"""The console's devices: scoped lists with the live state, and the administrator's audited actions.

Who gets which status on each route: ``tests/access_cases/devices.py``, run by
``tests/test_web_matrix.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from realtime import keys
from realtime.embedded_redis import free_port
from realtime.protocol import LiveState, encode
from realtime.redis_client import server_redis
from storage.accounts import create_agent, hash_token, lookup_token
from storage.audit_models import AuditEntry
from storage.models import AgentDevice
from tests.web_world import World, make_world
from web.devices import DeviceRow, with_live

SEEN = datetime(2027, 1, 15, 8, 30, tzinfo=UTC)  # 17:30 in Asia/Tokyo


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def audit_after(engine: Engine, seq: int) -> list[tuple[str, str, str | None, str, dict[str, Any]]]:
    with Session(engine) as s:
        rows = s.execute(
            select(AuditEntry).where(col(AuditEntry.seq) > seq).order_by(col(AuditEntry.seq))
        ).scalars()
        return [(r.action, r.target, r.tenant_id, r.actor, r.detail) for r in rows]


def last_seq(engine: Engine) -> int:
    with Session(engine) as s:
        return max(s.execute(select(col(AuditEntry.seq))).scalars(), default=0)


async def test_an_administrator_issues_a_device_whose_token_is_shown_once_and_stored_hashed(
    world: World,
) -> None:
    """The issue answer carries a working token; the database keeps only its hash; reads never show it."""
    client, csrf = await world.signed_in("alice", "192.0.2.77")
    before = last_seq(world.engine)
    answer = await client.post(
        "/api/v1/devices", json={"id": "pc-1", "user_id": world.ids["wataru"]}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    token = body["token"]
    identity = lookup_token(world.engine, token)
    assert identity is not None
    assert (identity.tenant, identity.agent_id, identity.user_id) == ("acme", "pc-1", world.ids["wataru"])
    with Session(world.engine) as s:
        stored = s.get(AgentDevice, "pc-1")
        assert stored is not None
        assert stored.token_hash == hash_token(token)
    assert body["device"] | {"created_at": None} == {
        "id": "pc-1", "name": "pc-1", "user_id": world.ids["wataru"], "user_login": "wataru",
        "user_name": "Wataru", "created_at": None, "revoked": False, "revoked_at": None,
        "live_known": True, "online": False, "last_seen": None, "agent_version": None,
    }  # fmt: skip
    for path in ("/api/v1/devices", "/api/v1/devices/pc-1", "/devices", "/devices/pc-1"):
        assert token not in (await client.get(path)).text
    assert audit_after(world.engine, before) == [
        ("agent.create", "agent:pc-1", "acme", f"user:{world.ids['alice']}",
         {"source": "192.0.2.77", "changes": {"user_id": [None, world.ids["wataru"]]}}),
    ]  # fmt: skip


async def test_a_taken_or_malformed_device_id_and_another_tenants_user_are_refused_clearly(
    world: World,
) -> None:
    """409 for an id in use (even by another tenant), 422 naming the shape, 404 for beta's user."""
    create_agent(world.engine, "beta", "beta-pc", "bill")
    client, csrf = await world.signed_in("alice")
    headers = {"X-CSRF-Token": csrf}
    wataru = world.ids["wataru"]
    taken = await client.post("/api/v1/devices", json={"id": "beta-pc", "user_id": wataru}, headers=headers)
    assert (taken.status_code, taken.json()["error"]) == (409, "devices_taken")
    bad = await client.post("/api/v1/devices", json={"id": "PC 1", "user_id": wataru}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["where"] == "body.id"
    other = await client.post(
        "/api/v1/devices", json={"id": "pc-2", "user_id": world.ids["bill"]}, headers=headers
    )
    assert (other.status_code, other.json()["error"]) == (404, "devices_user_not_found")
    page = await client.post("/devices", data={"device_id": "beta-pc", "login": "wataru", "csrf": csrf})
    assert page.status_code == 409
    assert "この端末IDはすでに使われています" in page.text
    nobody = await client.post("/devices", data={"device_id": "pc-3", "login": "bill", "csrf": csrf})
    assert nobody.status_code == 404
    assert "組織にそのユーザーはいません。" in nobody.text and 'value="pc-3"' in nobody.text
    with Session(world.engine) as s:
        assert (s.get(AgentDevice, "pc-2"), s.get(AgentDevice, "pc-3")) == (None, None)


async def test_rotating_a_token_stops_the_old_one_and_is_audited(world: World) -> None:
    """After a rotation the old token opens nothing, the new one does, and the entry says revoked -> not."""
    old = create_agent(world.engine, "acme", "pc-r", "wataru")
    client, csrf = await world.signed_in("alice", "192.0.2.5")
    before = last_seq(world.engine)
    answer = await client.post("/api/v1/devices/pc-r/token", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    new = answer.json()["token"]
    assert lookup_token(world.engine, old) is None
    identity = lookup_token(world.engine, new)
    assert identity is not None
    assert (identity.agent_id, identity.revoked) == ("pc-r", False)
    assert audit_after(world.engine, before) == [
        ("agent.reissue", "agent:pc-r", "acme", f"user:{world.ids['alice']}",
         {"source": "192.0.2.5", "changes": {}}),
    ]  # fmt: skip


async def test_revoking_marks_the_device_revoked_once_and_is_audited(world: World) -> None:
    """A revocation is audited once; revoking again changes nothing and says so."""
    token = create_agent(world.engine, "acme", "pc-v", "wataru")
    client, csrf = await world.signed_in("alice", "192.0.2.6")
    before = last_seq(world.engine)
    first = await client.post("/api/v1/devices/pc-v/revoke", headers={"X-CSRF-Token": csrf})
    again = await client.post("/api/v1/devices/pc-v/revoke", headers={"X-CSRF-Token": csrf})
    assert (first.status_code, first.json()["changed"], first.json()["device"]["revoked"]) == (
        200,
        True,
        True,
    )
    assert (again.status_code, again.json()["changed"]) == (200, False)
    identity = lookup_token(world.engine, token)
    assert identity is not None and identity.revoked
    assert audit_after(world.engine, before) == [
        ("agent.revoke", "agent:pc-v", "acme", f"user:{world.ids['alice']}",
         {"source": "192.0.2.6", "changes": {"revoked": [False, True]}}),
    ]  # fmt: skip


async def test_reassigning_moves_the_device_within_the_tenant_only(world: World) -> None:
    """The device goes to wendy (audited old -> new user); beta's user is a 404 and changes nothing."""
    create_agent(world.engine, "acme", "pc-m", "wataru")
    client, csrf = await world.signed_in("alice", "192.0.2.7")
    headers = {"X-CSRF-Token": csrf}
    before = last_seq(world.engine)
    foreign = await client.put(
        "/api/v1/devices/pc-m/user", json={"user_id": world.ids["bob"]}, headers=headers
    )
    assert (foreign.status_code, foreign.json()["error"]) == (404, "devices_user_not_found")
    moved = await client.put(
        "/api/v1/devices/pc-m/user", json={"user_id": world.ids["wendy"]}, headers=headers
    )
    assert (moved.status_code, moved.json()["user_login"]) == (200, "wendy")
    same = await client.put(
        "/api/v1/devices/pc-m/user", json={"user_id": world.ids["wendy"]}, headers=headers
    )
    assert same.status_code == 200
    assert audit_after(world.engine, before) == [
        ("agent.reassign", "agent:pc-m", "acme", f"user:{world.ids['alice']}",
         {"source": "192.0.2.7", "changes": {"user_id": [world.ids["wataru"], world.ids["wendy"]]}}),
    ]  # fmt: skip
    mika, _ = await world.signed_in("mika")
    wendy, _ = await world.signed_in("wendy")
    assert (await mika.get("/api/v1/devices/pc-m")).status_code == 404  # wendy is not in sales
    assert [d["id"] for d in (await wendy.get("/api/v1/devices")).json()["devices"]] == ["pc-m"]


async def test_each_role_lists_exactly_the_devices_of_the_users_it_may_see(world: World) -> None:
    """alice: all of acme's (one without a user too); mika: hers and sales'; wataru and wendy: their own."""
    for agent_id, login in (("a-alice", "alice"), ("a-mika", "mika"), ("a-wataru", "wataru"),
                            ("a-wendy", "wendy"), ("a-nobody", None)):  # fmt: skip
        create_agent(world.engine, "acme", agent_id, login)
    create_agent(world.engine, "beta", "b-bill", "bill")
    seen = {}
    for login in ("alice", "mika", "wataru", "wendy", "bob", "ben", "bill"):
        client, _ = await world.signed_in(login)
        seen[login] = [d["id"] for d in (await client.get("/api/v1/devices")).json()["devices"]]
    assert seen == {
        "alice": ["a-alice", "a-mika", "a-nobody", "a-wataru", "a-wendy"],
        "mika": ["a-mika", "a-wataru"],
        "wataru": ["a-wataru"],
        "wendy": ["a-wendy"],
        "bob": ["b-bill"],
        "ben": ["b-bill"],
        "bill": ["b-bill"],
    }


async def test_online_last_seen_and_version_come_from_the_live_state_in_redis(world: World) -> None:
    """A live state in the gateways' hash shows as online, its version, and last seen in the user's zone."""
    create_agent(world.engine, "acme", "pc-l", "wataru")
    create_agent(world.engine, "acme", "pc-quiet", "wataru")
    live = LiveState(tenant="acme", agent_id="pc-l", online=True, last_seen=SEEN, agent_version="1.4.2")
    await world.redis.hset(keys.live_hash("acme"), "pc-l", encode(live))
    client, _ = await world.signed_in("wataru")
    body = (await client.get("/api/v1/devices")).json()["devices"]
    assert [(d["id"], d["online"], d["last_seen"], d["agent_version"]) for d in body] == [
        ("pc-l", True, "2027-01-15T08:30:00Z", "1.4.2"),
        ("pc-quiet", False, None, None),
    ]
    page = await client.get("/devices")
    assert page.status_code == 200
    assert "2027-01-15 17:30" in page.text  # Asia/Tokyo, acme's zone
    assert "1.4.2" in page.text and "未接続" in page.text


async def test_the_pages_speak_the_users_language_and_offer_actions_to_administrators_only(
    world: World,
) -> None:
    """In English after a language change; the issue and revoke forms for alice, not for mika."""
    create_agent(world.engine, "acme", "pc-p", "wataru")
    alice, csrf = await world.signed_in("alice")
    await alice.patch("/api/v1/me", json={"language": "en"}, headers={"X-CSRF-Token": csrf})
    listing = await alice.get("/devices")
    assert "Issue a device" in listing.text and 'action="/devices"' in listing.text
    detail = await alice.get("/devices/pc-p")
    assert 'action="/devices/pc-p/revoke"' in detail.text and "Rotate the token" in detail.text
    mika, _ = await world.signed_in("mika")
    page = await mika.get("/devices/pc-p")
    assert page.status_code == 200
    assert "端末" in page.text and "/devices/pc-p/revoke" not in page.text
    assert "/devices/pc-p/token" not in page.text and "/devices/pc-p/user" not in page.text


async def test_the_revoke_and_reassign_forms_redirect_to_the_device_with_a_notice(world: World) -> None:
    """Post/redirect/get: 303 to the device page, which says what was done."""
    create_agent(world.engine, "acme", "pc-f", "wataru")
    client, csrf = await world.signed_in("alice")
    revoked = await client.post("/devices/pc-f/revoke", data={"csrf": csrf})
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/devices/pc-f?done=revoked")
    assert "端末を失効させました。" in (await client.get(revoked.headers["location"])).text
    moved = await client.post("/devices/pc-f/reassign", data={"csrf": csrf, "login": "wendy"})
    assert (moved.status_code, moved.headers["location"]) == (303, "/devices/pc-f?done=reassigned")
    issued = await client.post("/devices", data={"csrf": csrf, "device_id": "pc-g", "login": "wendy"})
    assert issued.status_code == 200
    token = issued.text.split("<code>")[1].split("</code>")[0]
    assert lookup_token(world.engine, token) is not None


async def test_the_list_page_pages_by_a_hundred_devices(world: World) -> None:
    """101 devices: the first page has 100 and a next link, the second one device and a previous link."""
    for n in range(101):
        create_agent(world.engine, "acme", f"pc-{n:03d}", "wataru")
    client, _ = await world.signed_in("wataru")
    first = (await client.get("/devices")).text
    second = (await client.get("/devices", params={"offset": "100"})).text
    assert first.count('<a href="/devices/pc-') == 100 and 'href="/devices?offset=100"' in first
    assert second.count('<a href="/devices/pc-') == 1 and 'href="/devices?offset=0"' in second
    assert "/devices/pc-100" in second and "/devices/pc-100" not in first


async def test_a_redis_that_does_not_answer_makes_the_live_state_unknown_not_an_error() -> None:
    """Against a Redis port nobody listens on, every row comes back with its live state unknown."""
    rows = [DeviceRow("pc-1", "pc-1", None, None, None, SEEN, None)]
    dead = server_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        views = await asyncio.wait_for(with_live(dead, "acme", rows), 30)
    finally:
        await dead.aclose()
    assert [(v.id, v.live_known, v.online, v.last_seen) for v in views] == [("pc-1", False, None, None)]
