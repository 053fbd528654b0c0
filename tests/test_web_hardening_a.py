"""Fixer A's hardening, against real Redis and databases: password checks of signed-in users are
limited like sign-ins, failures elsewhere do not lock an owner out, API tokens end with account
recovery, and an administrator cannot reset their own second factor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from tests.web_world import PASSWORD, World, make_world
from web.api_tokens import made_before_change
from web.ratelimit import account_address_key, account_key

NEW_PASSWORD = "a much longer new passphrase 42"
ELSEWHERE = "198.51.100.200"


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def sign_in_body(login: str, password: str = PASSWORD) -> dict[str, str]:
    return {"tenant": "acme", "login": login, "password": password}


def revocations(engine: Engine, user_id: int) -> list[dict[str, Any]]:
    with Session(engine) as s:
        rows = s.execute(
            select(col(AuditEntry.detail))
            .where(
                col(AuditEntry.target) == f"user:{user_id}", col(AuditEntry.action) == "web.api_token_revoke"
            )
            .order_by(col(AuditEntry.seq))
        ).scalars()
        return [dict(d) for d in rows]


async def make_token(world: World, login: str) -> tuple[str, int]:
    client, csrf = await world.signed_in(login)
    answer = await client.post("/api/v1/me/tokens", json={"name": "export"}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"]), int(answer.json()["id"])


def bare(world: World, token: str) -> httpx.AsyncClient:
    client = world.client("198.51.100.7")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_limit_keys_tell_accounts_and_addresses_apart() -> None:
    """Pure: the per-address account key differs by address and from the account key; fixed length."""
    keys = {account_address_key("acme", "wendy", a) for a in ("192.0.2.1", "192.0.2.2")}
    assert len(keys) == 2 and account_key("acme", "wendy") not in keys
    assert {len(k) for k in keys} == {32}
    assert account_address_key("acme", "a\0b", "c") != account_address_key("acme", "a", "b\0c")


def test_a_token_made_before_the_credential_changed_is_stale() -> None:
    """Pure: earlier than the change -> stale; at or after it, or no credential row -> not."""
    t = datetime(2027, 1, 15, tzinfo=UTC)
    assert made_before_change(t, t + timedelta(microseconds=1)) is True
    assert made_before_change(t, t) is False
    assert made_before_change(t + timedelta(seconds=1), t) is False
    assert made_before_change(t, None) is False


async def test_password_change_is_limited_before_the_current_password_is_checked(world: World) -> None:
    """3 wrong `current` (API and page) -> then even the right one gets 429 with Retry-After."""
    client, csrf = await world.signed_in("wataru")
    headers = {"X-CSRF-Token": csrf}
    for n in range(2):
        wrong = await client.put(
            "/api/v1/me/password", json={"current": f"guess {n}", "new": NEW_PASSWORD}, headers=headers
        )
        assert (wrong.status_code, wrong.json()["error"]) == (422, "wrong_password")
    page = await client.post(
        "/profile/password", data={"current": "guess 2", "new": NEW_PASSWORD, "csrf": csrf}
    )
    assert page.status_code == 422
    blocked = await client.put(
        "/api/v1/me/password", json={"current": PASSWORD, "new": NEW_PASSWORD}, headers=headers
    )
    assert (blocked.status_code, blocked.json()["error"]) == (429, "too_many")
    assert 1 <= int(blocked.headers["retry-after"]) <= 600
    page_blocked = await client.post(
        "/profile/password", data={"current": PASSWORD, "new": NEW_PASSWORD, "csrf": csrf}
    )
    assert page_blocked.status_code == 429
    fine = await world.client(ELSEWHERE).post("/api/v1/session", json=sign_in_body("wataru"))
    assert fine.status_code == 200  # the password did not change


async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(world: World) -> None:
    """3 failures from one address block wendy there (429); from another address she signs in (200)."""
    for n in range(3):
        answer = await world.client("203.0.113.77").post(
            "/api/v1/session", json=sign_in_body("wendy", f"x{n}")
        )
        assert answer.status_code == 401
    there = await world.client("203.0.113.77").post("/api/v1/session", json=sign_in_body("wendy"))
    assert there.status_code == 429
    owner = await world.client(ELSEWHERE).post("/api/v1/session", json=sign_in_body("wendy"))
    assert owner.status_code == 200


async def test_a_guess_spread_over_many_addresses_still_stops(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """With the total at 4: one failure from each of 4 addresses -> the right password is 429 anywhere."""
    async with make_world(tmp_path, database_url, engine, redis_url, web_fails_per_account_total=4) as world:
        for n in range(4):
            answer = await world.client(f"198.51.100.{n}").post(
                "/api/v1/session", json=sign_in_body("wendy", f"x{n}")
            )
            assert answer.status_code == 401
        blocked = await world.client(ELSEWHERE).post("/api/v1/session", json=sign_in_body("wendy"))
        assert (blocked.status_code, blocked.json()["error"]) == (429, "too_many")
        other = await world.client(ELSEWHERE).post("/api/v1/session", json=sign_in_body("wataru"))
        assert other.status_code == 200


async def change_password(world: World) -> None:
    client, csrf = await world.signed_in("wataru")
    answer = await client.put(
        "/api/v1/me/password", json={"current": PASSWORD, "new": NEW_PASSWORD}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 204, answer.text


async def sign_out_everywhere(world: World) -> None:
    client, csrf = await world.signed_in("wataru")
    answer = await client.delete("/api/v1/sessions", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text


async def admin_reset(world: World) -> None:
    world.clock.advance(1)
    alice, csrf = await world.signed_in("alice")
    answer = await alice.post(
        f"/api/v1/users/{world.ids['wataru']}/setup-link", headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 201, answer.text


async def disable_and_enable(world: World) -> None:
    alice, csrf = await world.signed_in("alice")
    for enabled in (False, True):
        answer = await alice.patch(
            f"/api/v1/users/{world.ids['wataru']}", json={"enabled": enabled}, headers={"X-CSRF-Token": csrf}
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (change_password, "password_change"),
        (sign_out_everywhere, "sign_out_everywhere"),
        (admin_reset, "credential_changed"),
        (disable_and_enable, "disabled"),
    ],
)
async def test_api_tokens_end_with_account_recovery(world: World, event: Any, reason: str) -> None:
    """After the event the user's token is 401 api_token_invalid and its revocation is audited."""
    token, token_id = await make_token(world, "wataru")
    assert (await bare(world, token).get("/api/v1/me")).status_code == 200
    await event(world)
    after = await bare(world, token).get("/api/v1/me")
    assert (after.status_code, after.json()["error"]) == (401, "api_token_invalid")
    found = revocations(world.engine, world.ids["wataru"])
    assert [(d["reason"], d["api_token_ids"]) for d in found] == [(reason, [token_id])]


async def test_a_token_made_after_a_password_change_works(world: World) -> None:
    """A token made after the change (same clock moment) acts as its user: only older ones end."""
    await change_password(world)
    client = world.client()
    signed = await client.post("/api/v1/session", json=sign_in_body("wataru", NEW_PASSWORD))
    csrf = signed.json()["csrf_token"]
    made = await client.post("/api/v1/me/tokens", json={"name": "new"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    me = await bare(world, made.json()["token"]).get("/api/v1/me")
    assert (me.status_code, me.json()["login"]) == (200, "wataru")


async def test_an_administrator_cannot_reset_their_own_second_factor(world: World) -> None:
    """DELETE /api/v1/users/{own}/second-factor and the page's reset: 409 pointing to the profile page."""
    alice, csrf = await world.signed_in("alice")
    own = world.ids["alice"]
    answer = await alice.delete(f"/api/v1/users/{own}/second-factor", headers={"X-CSRF-Token": csrf})
    assert (answer.status_code, answer.json()["error"]) == (409, "second_factor_reset_self")
    assert "/profile/second-factor" in answer.json()["message"]
    page = await alice.post(f"/users/{own}/second-factor/reset", data={"csrf": csrf})
    assert page.status_code == 409
    assert "/profile/second-factor" in page.text
    other = await alice.delete(
        f"/api/v1/users/{world.ids['mika']}/second-factor", headers={"X-CSRF-Token": csrf}
    )
    assert other.status_code == 204
