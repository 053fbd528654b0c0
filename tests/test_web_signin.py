"""Console sign-in against real Redis and real databases: sessions, expiry, CSRF, limits, rehash, disable."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.account_changes import terminate_tenant, update_user
from storage.audit_models import AuditEntry
from storage.web_models import WebCredential
from tests.web_world import PASSWORD, World, make_world
from web import keys
from web.passwords import Argon2Params, make_hasher
from web.session_store import end_user_sessions_now
from web.sessions import token_hash


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def web_actions(engine: Engine, user_id: int) -> list[tuple[str, str]]:
    with Session(engine) as s:
        rows = s.execute(
            select(col(AuditEntry.action), col(AuditEntry.detail))
            .where(col(AuditEntry.target) == f"user:{user_id}", col(AuditEntry.action).like("web.%"))
            .order_by(col(AuditEntry.seq))
        ).all()
    return [(a, d.get("reason", "")) for a, d in rows]


async def test_api_sign_in_sets_an_opaque_host_cookie_and_returns_the_csrf_token(world: World) -> None:
    """A right password: 200, the principal, a __Host- cookie (Secure, HttpOnly, Lax, Path=/) and audit."""
    client = world.client()
    answer = await client.post(
        "/api/v1/session", json={"tenant": "acme", "login": "mika", "password": PASSWORD}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["login"], body["role"], body["managed_groups"], body["time_zone"]) == (
        "mika", "manager", [1], "Asia/Tokyo",
    )  # fmt: skip
    cookie = answer.headers["set-cookie"]
    match = re.fullmatch(
        r"__Host-tw_session=([A-Za-z0-9_-]{43}); HttpOnly; Path=/; SameSite=lax; Secure", cookie
    )
    assert match is not None, cookie
    token = match.group(1)
    assert await world.redis.exists(keys.session_key(token_hash(token))) == 1
    assert await world.redis.exists(keys.session_key(token)) == 0  # only the hash is a key
    assert token not in str(await world.redis.hgetall(keys.session_key(token_hash(token))))
    me = await client.get("/api/v1/me")
    assert (me.status_code, me.json()["csrf_token"]) == (200, body["csrf_token"])
    assert web_actions(world.engine, world.ids["mika"]) == [("web.password_set", ""), ("web.sign_in", "")]


WRONG = [
    ("acme", "mika", "wrong password"),  # wrong password
    ("beta", "mika", PASSWORD),  # another tenant
    ("acme", "nobody", PASSWORD),  # no such login
    ("acme", "MIKA", PASSWORD),  # logins are case-sensitive
    ("ACME", "mika", PASSWORD),  # not a tenant id
]


async def test_a_wrong_tenant_login_or_password_is_refused_alike(world: World) -> None:
    """Wrong password, other tenant, unknown or differently cased login: the same 401, no cookie."""
    for tenant, login, password in WRONG:
        client = world.client()
        answer = await client.post(
            "/api/v1/session", json={"tenant": tenant, "login": login, "password": password}
        )
        assert answer.status_code == 401, (tenant, login)
        assert answer.json() == {
            "error": "sign_in_failed", "message": "The organisation, login or password is not right.",
        }  # fmt: skip
        assert "set-cookie" not in answer.headers
        assert (await client.get("/api/v1/me")).status_code == 401


async def test_page_sign_in_redirects_and_a_wrong_password_shows_the_message_in_japanese(
    world: World,
) -> None:
    """The form: a right password 303 to /users with the cookie; a wrong one 401 with the Japanese text."""
    client = world.client()
    page = await client.get("/signin")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)
    assert page.status_code == 200 and pre is not None
    form = {"tenant": "acme", "login": "alice", "password": "wrong password", "pre": pre.group(1)}
    wrong = await client.post("/signin", data=form)
    assert wrong.status_code == 401
    assert "組織ID、ログインIDまたはパスワードが正しくありません。" in wrong.text
    pre = re.search(r'name="pre" value="([^"]+)"', wrong.text)
    assert pre is not None
    right = await client.post("/signin", data={**form, "password": PASSWORD, "pre": pre.group(1)})
    assert (right.status_code, right.headers["location"]) == (303, "/users")
    users = await client.get("/users")
    assert users.status_code == 200 and ">wendy</a>" in users.text and "ユーザー" in users.text


async def test_sign_in_form_without_its_double_submit_token_is_refused(world: World) -> None:
    """Login CSRF: a sign-in form posted without the pre-session cookie's token gets 403 and no session."""
    client = world.client()
    answer = await client.post(
        "/signin", data={"tenant": "acme", "login": "alice", "password": PASSWORD, "pre": "forged"}
    )
    assert answer.status_code == 403
    assert "tw_session" not in answer.headers.get("set-cookie", "")


async def test_failed_sign_ins_are_limited_per_account(world: World) -> None:
    """After 3 failures for one account from one address the right password is refused there with 429 too."""
    for n in range(3):
        answer = await world.client("198.51.100.9").post(
            "/api/v1/session", json={"tenant": "acme", "login": "wendy", "password": f"guess {n}"}
        )
        assert answer.status_code == 401
    blocked = await world.client("198.51.100.9").post(
        "/api/v1/session", json={"tenant": "acme", "login": "wendy", "password": PASSWORD}
    )
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "too_many"
    assert 1 <= int(blocked.headers["retry-after"]) <= 600
    other = await world.client("198.51.100.9").post(
        "/api/v1/session", json={"tenant": "acme", "login": "wataru", "password": PASSWORD}
    )
    assert other.status_code == 200  # another account from the same address is not blocked
    assert web_actions(world.engine, world.ids["wendy"])[1:] == [("web.sign_in_refused", "password")] * 3


async def test_failed_sign_ins_are_limited_per_address(world: World) -> None:
    """After 8 failures from one address (over several accounts) that address is refused, others are not."""
    logins = ["alice", "mika", "wataru", "wendy"]
    for n in range(8):
        answer = await world.client("203.0.113.5").post(
            "/api/v1/session", json={"tenant": "acme", "login": logins[n % 4] + "x", "password": "nope"}
        )
        assert answer.status_code == 401
    blocked = await world.client("203.0.113.5").post(
        "/api/v1/session", json={"tenant": "acme", "login": "alice", "password": PASSWORD}
    )
    assert blocked.status_code == 429
    fine = await world.client("203.0.113.6").post(
        "/api/v1/session", json={"tenant": "acme", "login": "alice", "password": PASSWORD}
    )
    assert fine.status_code == 200


async def test_a_hash_made_with_older_parameters_is_replaced_at_sign_in(world: World) -> None:
    """A password hashed with other argon2 parameters signs in and is rehashed with the current ones."""
    old = make_hasher(Argon2Params(time_cost=2, memory_kib=8192, parallelism=2)).hash(PASSWORD)
    with Session(world.engine) as s:
        credential = s.get(WebCredential, world.ids["wendy"])
        assert credential is not None
        credential.password_hash = old
        s.add(credential)
        s.commit()
    client, _ = await world.signed_in("wendy")
    with Session(world.engine) as s:
        credential = s.get(WebCredential, world.ids["wendy"])
        assert credential is not None
        stored = credential.password_hash
    assert stored is not None and stored != old
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert not make_hasher(Argon2Params(1, 8192, 1)).check_needs_rehash(stored)
    assert (await client.get("/api/v1/me")).status_code == 200
    again, _ = await world.signed_in("wendy")  # the new hash verifies the same password
    assert (await again.get("/api/v1/me")).status_code == 200


async def test_state_changing_requests_without_the_csrf_token_are_refused(world: World) -> None:
    """DELETE/PATCH/PUT without X-CSRF-Token or with a wrong one: 403 csrf, and nothing changes."""
    client, csrf = await world.signed_in("wataru")
    assert (await client.delete("/api/v1/session")).status_code == 403
    wrong = await client.patch(
        "/api/v1/me", json={"name": "Mallory"}, headers={"X-CSRF-Token": csrf[:-1] + "x"}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (403, "csrf")
    form = await client.post("/profile", data={"name": "Mallory", "language": "en"})
    assert form.status_code == 403
    me = await client.get("/api/v1/me")
    assert (me.status_code, me.json()["name"]) == (200, "Wataru")
    right = await client.patch("/api/v1/me", json={"name": "Wataru W."}, headers={"X-CSRF-Token": csrf})
    assert (right.status_code, right.json()["name"]) == (200, "Wataru W.")


async def test_a_session_ends_after_its_idle_time(world: World) -> None:
    """600 s idle: refused (401) and deleted; a request within the idle time keeps it alive."""
    client, _ = await world.signed_in("alice")
    world.clock.advance(599)
    assert (await client.get("/api/v1/me")).status_code == 200
    world.clock.advance(599)
    assert (await client.get("/api/v1/me")).status_code == 200  # 599 s after the last request
    world.clock.advance(600)
    assert (await client.get("/api/v1/me")).status_code == 401
    world.clock.advance(-600)
    assert (await client.get("/api/v1/me")).status_code == 401  # deleted, not only judged idle


async def test_a_session_ends_at_its_absolute_time_however_busy(world: World) -> None:
    """A session used every 5 minutes still ends 3600 s after it began."""
    client, _ = await world.signed_in("alice")
    for _ in range(11):
        world.clock.advance(300)
        assert (await client.get("/api/v1/me")).status_code == 200
    world.clock.advance(300)
    answer = await client.get("/api/v1/me")
    assert (answer.status_code, answer.json()["error"]) == (401, "not_signed_in")
    page = await client.get("/users")
    assert (page.status_code, page.headers["location"]) == (303, "/signin?next=%2Fusers")


async def test_sign_out_ends_one_session_and_sign_out_everywhere_ends_all(world: World) -> None:
    """Sign-out ends only its session; sign-out everywhere ends the user's three others, not other users'."""
    first, csrf1 = await world.signed_in("mika")
    second, _ = await world.signed_in("mika")
    third, csrf3 = await world.signed_in("mika")
    fourth, _ = await world.signed_in("mika")
    other, _ = await world.signed_in("alice")
    assert (await first.delete("/api/v1/session", headers={"X-CSRF-Token": csrf1})).status_code == 204
    assert [(await c.get("/api/v1/me")).status_code for c in (first, second, third, fourth)] == [
        401,
        200,
        200,
        200,
    ]
    ended = await third.delete("/api/v1/sessions", headers={"X-CSRF-Token": csrf3})
    assert (ended.status_code, ended.json()) == (200, {"ended": 3})
    assert [(await c.get("/api/v1/me")).status_code for c in (second, third, fourth, other)] == [
        401,
        401,
        401,
        200,
    ]
    assert await world.redis.scard(keys.user_sessions_key("acme", world.ids["mika"])) == 0
    actions = [a for a, _ in web_actions(world.engine, world.ids["mika"])]
    assert actions[-2:] == ["web.sign_out", "web.sign_out_everywhere"]


async def test_a_disabled_user_cannot_sign_in_and_their_open_sessions_end_at_once(world: World) -> None:
    """Disabling (storage's update_user) ends open sessions on their next request; sign-in then fails."""
    client, _ = await world.signed_in("wataru")
    page = world.client()
    assert (await page.get("/api/v1/me")).status_code == 401
    other, _ = await world.signed_in("wataru")
    update_user(world.engine, "acme", "wataru", {"enabled": False})
    assert (await client.get("/api/v1/me")).status_code == 401
    index = keys.user_sessions_key("acme", world.ids["wataru"])
    assert await world.redis.scard(index) == 1  # `other` is refused too, but still in Redis until ...
    ended = await asyncio.to_thread(
        end_user_sessions_now, world.settings.redis_url or "", "acme", world.ids["wataru"]
    )
    assert (ended, await world.redis.exists(index)) == (1, 0)  # ... what disabling calls drops it
    assert (await other.get("/api/v1/me")).status_code == 401
    assert (await client.get("/users")).status_code == 303
    refused = await world.client().post(
        "/api/v1/session", json={"tenant": "acme", "login": "wataru", "password": PASSWORD}
    )
    assert (refused.status_code, refused.json()["error"]) == (401, "sign_in_failed")
    assert web_actions(world.engine, world.ids["wataru"])[-1] == ("web.sign_in_refused", "disabled")
    update_user(world.engine, "acme", "wataru", {"enabled": True})
    assert (await client.get("/api/v1/me")).status_code == 401  # the session stays ended


async def test_password_change_needs_the_current_one_and_ends_the_other_sessions(world: World) -> None:
    """Wrong current password: 422; right: 204, this session continues, the other ends, new password works."""
    client, csrf = await world.signed_in("wendy")
    other, _ = await world.signed_in("wendy")
    headers = {"X-CSRF-Token": csrf}
    wrong = await client.put("/api/v1/me/password", json={"current": "nope", "new": "a new long password"},
                             headers=headers)  # fmt: skip
    assert (wrong.status_code, wrong.json()["error"]) == (422, "wrong_password")
    short = await client.put(
        "/api/v1/me/password", json={"current": PASSWORD, "new": "short"}, headers=headers
    )
    assert (short.status_code, short.json()["error"]) == (422, "too_short")
    done = await client.put(
        "/api/v1/me/password", json={"current": PASSWORD, "new": "a new long password"}, headers=headers
    )
    assert done.status_code == 204
    assert [(await c.get("/api/v1/me")).status_code for c in (client, other)] == [200, 401]
    old = await world.client().post(
        "/api/v1/session", json={"tenant": "acme", "login": "wendy", "password": PASSWORD}
    )
    assert old.status_code == 401
    new = await world.client().post(
        "/api/v1/session", json={"tenant": "acme", "login": "wendy", "password": "a new long password"}
    )
    assert new.status_code == 200
    assert "web.password_change" in [a for a, _ in web_actions(world.engine, world.ids["wendy"])]


async def test_profile_page_changes_name_and_language(world: World) -> None:
    """The profile form saves name and language (303); the page then speaks English."""
    client, csrf = await world.signed_in("wataru")
    saved = await client.post("/profile", data={"name": "Wataru Sato", "language": "en", "csrf": csrf})
    assert (saved.status_code, saved.headers["location"]) == (303, "/profile?saved=1")
    page = await client.get("/profile?saved=1")
    assert page.status_code == 200
    assert 'value="Wataru Sato"' in page.text and "Saved." in page.text and '<html lang="en">' in page.text
    bad = await client.post("/profile", data={"name": "evil\u202ename", "language": "en", "csrf": csrf})
    assert bad.status_code == 422 and "U+202E" in bad.text


async def test_a_terminated_tenant_cannot_sign_in_and_its_sessions_end(world: World) -> None:
    """Terminating acme: its open session is refused at once and sign-in fails like a wrong password."""
    client, _ = await world.signed_in("alice")
    beta, _ = await world.signed_in("bob")
    terminate_tenant(world.engine, "acme", datetime.fromtimestamp(world.clock(), UTC))
    assert [(await c.get("/api/v1/me")).status_code for c in (client, beta)] == [401, 200]
    answer = await world.client().post(
        "/api/v1/session", json={"tenant": "acme", "login": "alice", "password": PASSWORD}
    )
    assert (answer.status_code, answer.json()["error"]) == (401, "sign_in_failed")
    assert web_actions(world.engine, world.ids["alice"])[-1] == ("web.sign_in_refused", "tenant_terminated")


async def test_a_password_typed_as_the_login_is_not_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A sign-in whose login is someone's password (no such account) logs the refusal without it."""
    caplog.set_level(logging.DEBUG)
    answer = await world.client().post(
        "/api/v1/session", json={"tenant": "acme", "login": "My$ecretPassw0rd", "password": ""}
    )
    assert answer.status_code == 401
    lines = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name == "web.signin"]
    assert len(lines) <= 1 and all("My$ecretPassw0rd" not in line for line in lines)
    assert all("My$ecretPassw0rd" not in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
