"""API tokens against real Redis and databases: made once, stored hashed, acting as their user with
their role, no CSRF, listed with last use, revoked or expired or disabled -> stopped at once,
never making tokens or changing how one signs in; the tokens page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.account_changes import update_user
from storage.audit_models import AuditEntry
from storage.personal_data import collect, find_subject
from storage.web_models import ApiToken
from tests.web_world import World, make_world
from web.sessions import token_hash


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


async def make_token(world: World, login: str, **body: object) -> tuple[str, dict[str, object]]:
    client, csrf = await world.signed_in(login)
    answer = await client.post(
        "/api/v1/me/tokens", json={"name": "nightly export", **body}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    return str(created.pop("token")), created


def bare(world: World, token: str) -> httpx.AsyncClient:
    """A client without cookies sending the token."""
    client = world.client("198.51.100.7")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


async def test_a_token_is_shown_once_stored_as_sha256_and_acts_as_its_user(world: World) -> None:
    """201 with a tws_ token; the row holds its sha256 only; GET /me with it (no cookie) is wataru."""
    token, created = await make_token(world, "wataru")
    assert re.fullmatch(r"tws_[A-Za-z0-9_-]{43}", token)
    assert (created["name"], created["expires_at"], created["last_used_at"]) == ("nightly export", None, None)
    with Session(world.engine) as s:
        row = s.get(ApiToken, created["id"])
    assert row is not None and row.token_hash == token_hash(token)
    me = await bare(world, token).get("/api/v1/me")
    assert me.status_code == 200
    assert (me.json()["login"], me.json()["role"]) == ("wataru", "worker")
    assert "set-cookie" not in me.headers
    with Session(world.engine) as s:
        audit = s.execute(
            select(col(AuditEntry.action), col(AuditEntry.actor), col(AuditEntry.detail)).where(
                col(AuditEntry.action) == "web.api_token_create"
            )
        ).one()
    assert audit[:2] == ("web.api_token_create", f"user:{world.ids['wataru']}")
    assert audit[2]["api_token_id"] == created["id"] and token not in str(audit[2])


async def test_a_token_has_its_users_scope_and_needs_no_csrf(world: World) -> None:
    """A worker's token lists only the worker; a change with it needs no CSRF token."""
    token, _ = await make_token(world, "wataru")
    client = bare(world, token)
    users = (await client.get("/api/v1/users")).json()["users"]
    assert [u["login"] for u in users] == ["wataru"]
    assert (await client.get(f"/api/v1/users/{world.ids['wendy']}")).status_code == 404
    changed = await client.patch("/api/v1/me", json={"language": "en"})
    assert (changed.status_code, changed.json()["language"]) == (200, "en")


async def test_tokens_are_listed_with_their_last_use(world: World) -> None:
    """The list names each token with created, last used (noted on use) and expiry, never the token."""
    token, created = await make_token(world, "mika", expires_in_days=30)
    client = bare(world, token)
    listed = (await client.get("/api/v1/me/tokens")).json()["tokens"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert listed[0]["last_used_at"] is not None and listed[0]["expires_at"] is not None
    assert "token" not in listed[0] and token not in str(listed)


async def test_a_token_cannot_make_tokens_or_change_how_one_signs_in(world: World) -> None:
    """With a token: making a token, the password, the second factor, signing out: 403 api_token_forbidden."""
    token, _ = await make_token(world, "mika")
    client = bare(world, token)
    for method, path, body in (
        ("POST", "/api/v1/me/tokens", {"name": "more"}),
        ("PUT", "/api/v1/me/password", {"current": "x", "new": "a new long password"}),
        ("POST", "/api/v1/me/second-factor", None),
        ("POST", "/api/v1/me/second-factor/off", {"password": "x"}),
        ("DELETE", "/api/v1/session", None),
        ("DELETE", "/api/v1/sessions", None),
    ):
        answer = await client.request(method, path, json=body)
        assert (answer.status_code, answer.json()["error"]) == (403, "api_token_forbidden"), path


async def test_a_revoked_token_stops_at_once_and_only_its_owner_revokes_it(world: World) -> None:
    """wendy cannot revoke wataru's token (404); wataru can (204, audited); then the token is 401."""
    token, created = await make_token(world, "wataru")
    client = bare(world, token)
    assert (await client.get("/api/v1/me")).status_code == 200
    wendy, csrf = await world.signed_in("wendy")
    other = await wendy.delete(f"/api/v1/me/tokens/{created['id']}", headers={"X-CSRF-Token": csrf})
    assert other.status_code == 404
    owner, csrf = await world.signed_in("wataru")
    assert (
        await owner.delete(f"/api/v1/me/tokens/{created['id']}", headers={"X-CSRF-Token": csrf})
    ).status_code == 204
    refused = await client.get("/api/v1/me")
    assert (refused.status_code, refused.json()["error"]) == (401, "api_token_invalid")
    with Session(world.engine) as s:
        actions = list(
            s.execute(
                select(col(AuditEntry.action)).where(col(AuditEntry.action).like("web.api_token%"))
            ).scalars()
        )
    assert actions == ["web.api_token_create", "web.api_token_revoke"]


async def test_a_disabled_users_token_stops_at_once(world: World) -> None:
    """Disabling the user: the next request with their token is 401."""
    token, _ = await make_token(world, "wataru")
    client = bare(world, token)
    assert (await client.get("/api/v1/me")).status_code == 200
    update_user(world.engine, "acme", "wataru", {"enabled": False})
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_a_token_expires_and_its_expiry_is_bounded(world: World) -> None:
    """A 1-day token works, then not a day later; more than the maximum days: 422 naming it."""
    token, _ = await make_token(world, "alice", expires_in_days=1)
    client = bare(world, token)
    assert (await client.get("/api/v1/me")).status_code == 200
    world.clock.advance(86_400)
    assert (await client.get("/api/v1/me")).status_code == 401
    signed, csrf = await world.signed_in("alice")
    too_long = await signed.post(
        "/api/v1/me/tokens", json={"name": "x", "expires_in_days": 400}, headers={"X-CSRF-Token": csrf}
    )
    assert (too_long.status_code, too_long.json()["error"]) == (422, "api_token_expiry")
    assert "365" in too_long.json()["message"]


async def test_a_malformed_or_unknown_bearer_is_refused_even_with_a_session_cookie(world: World) -> None:
    """Authorization decides: a wrong token is 401 even on a client that has a live session cookie."""
    client, _ = await world.signed_in("alice")
    for header in ("Bearer tws_" + "A" * 43, "Bearer nonsense", "Basic YWxpY2U6eA=="):
        answer = await client.get("/api/v1/me", headers={"Authorization": header})
        assert (answer.status_code, answer.json()["error"]) == (401, "api_token_invalid"), header
    assert (await client.get("/api/v1/me")).status_code == 200


async def test_a_bad_token_name_is_refused_with_its_reason(world: World) -> None:
    """Blank or control characters: 422 naming which."""
    client, csrf = await world.signed_in("alice")
    for name, code in (("   ", "api_token_name_length"), ("a\x00b", "api_token_name_character")):
        answer = await client.post("/api/v1/me/tokens", json={"name": name}, headers={"X-CSRF-Token": csrf})
        assert (answer.status_code, answer.json()["error"]) == (422, code)


async def test_the_tokens_page_shows_a_new_token_once_and_revokes(world: World) -> None:
    """The page makes a token (shown on that answer only), lists it in the user's time zone, revokes it."""
    client, csrf = await world.signed_in("mika")
    made = await client.post(
        "/profile/tokens", data={"csrf": csrf, "name": "report bot", "expires_in_days": "7"}
    )
    assert made.status_code == 200
    token = re.search(r"<code>(tws_[A-Za-z0-9_-]{43})</code>", made.text)
    assert token is not None
    assert (await bare(world, token.group(1)).get("/api/v1/me")).status_code == 200
    page = await client.get("/profile/tokens")
    assert "report bot" in page.text and token.group(1) not in page.text
    assert "2027-01-15 17:00" in page.text  # T0 (08:00 UTC) in Asia/Tokyo
    bad = await client.post("/profile/tokens", data={"csrf": csrf, "name": "x", "expires_in_days": "-3"})
    assert bad.status_code == 422
    token_id = re.search(r'action="/profile/tokens/(\d+)/revoke"', page.text)
    assert token_id is not None
    revoked = await client.post(f"/profile/tokens/{token_id.group(1)}/revoke", data={"csrf": csrf})
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/profile/tokens?revoked=1")
    assert (await bare(world, token.group(1)).get("/api/v1/me")).status_code == 401


async def test_the_personal_data_export_has_tokens_and_second_factor_without_secrets(world: World) -> None:
    """export-user's rows of mika: her token (no hash) and her second factor (no sealed secret)."""
    client, csrf = await world.signed_in("mika")
    await client.post("/api/v1/me/second-factor", headers={"X-CSRF-Token": csrf})
    token, created = await make_token(world, "mika")
    rows = collect(world.engine, find_subject(world.engine, "acme", "mika"))
    assert [(r["id"], r["name"]) for r in rows["web_api_token"]] == [(created["id"], "nightly export")]
    assert [sorted(r) for r in rows["web_second_factor"]] == [["created_at", "enabled_at", "user_id"]]
    assert rows["web_recovery_code"] == []
    assert token_hash(token) not in str(rows)
