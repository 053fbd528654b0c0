"""The console attacked: wrong types, huge bodies and ids, control characters, forged cookies and sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from storage.account_changes import update_user
from tests.web_world import PASSWORD, World, make_world
from web import keys
from web.sessions import SessionRecord, new_token, token_hash


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_wrong_types_and_unknown_fields_are_422_without_echoing_the_input(world: World) -> None:
    """Numbers, lists, null, extra fields, a non-JSON body: 422 naming the field, never the value sent."""
    client = world.client()
    for body in (
        {"tenant": 5, "login": "mika", "password": "secret-123"},
        {"tenant": "acme", "login": ["mika"], "password": "secret-123"},
        {"tenant": "acme", "login": "mika", "password": None},
        {"tenant": "acme", "login": "mika", "password": "secret-123", "role": "admin"},
    ):
        answer = await client.post("/api/v1/session", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"] == "invalid"
        assert "secret-123" not in answer.text
    raw = await client.post("/api/v1/session", content=b"tenant=acme&login=mika&password=secret-123",
                            headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert raw.status_code == 422 and "secret-123" not in raw.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_huge_bodies_are_refused_before_they_are_read(world: World) -> None:
    """A 1 MB JSON body, a declared 10 GB one and a streamed 1 MB one without a length: 413."""
    client = world.client()
    big = {"tenant": "acme", "login": "mika", "password": "x" * 1_000_000}
    assert (await client.post("/api/v1/session", json=big)).status_code == 413
    declared = await client.post(
        "/api/v1/session", content=b"{}", headers={"content-length": str(10 * 2**30)}
    )
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield b" " * 65_536

    streamed = await client.post(
        "/api/v1/session", content=chunks(), headers={"content-type": "application/json"}
    )
    assert (streamed.status_code, streamed.json()["error"]) == (413, "too_large")


async def test_control_characters_and_long_logins_are_a_plain_failed_sign_in(world: World) -> None:
    """Newline, NUL, bidi override, 900 characters, full-width letters in a login: 401, the same message."""
    client = world.client()
    for login in (
        "mika\n",
        "mi\x00ka",
        "\u202emika",
        "m" * 900,
        "mika\r\nX-Injected: 1",
        "\uff4d\uff49\uff4b\uff41",
    ):
        answer = await client.post(
            "/api/v1/session", json={"tenant": "acme", "login": login, "password": PASSWORD}
        )
        assert (answer.status_code, answer.json()["error"]) == (401, "sign_in_failed"), login
    for tenant in ("acme\n", "../acme", "a" * 64, ""):
        answer = await client.post(
            "/api/v1/session", json={"tenant": tenant, "login": "mika", "password": PASSWORD}
        )
        assert answer.status_code == 401, tenant
    right = {"tenant": "acme", "login": "mika", "password": PASSWORD}
    assert (await client.post("/api/v1/session", json=right)).status_code == 200


async def test_bad_ids_and_queries_are_422_not_500(world: World) -> None:
    """Ids that are text, negative, zero or past 32 bits, and overlong searches or limits: 422."""
    client, _ = await world.signed_in("alice")
    for path in ("/api/v1/users/abc", "/api/v1/users/-1", "/api/v1/users/0", "/api/v1/users/" + "9" * 20,
                 "/api/v1/users/1.5", "/users/2147483648", "/api/v1/users?q=" + "a" * 121,
                 "/api/v1/users?limit=201", "/api/v1/users?offset=-1"):  # fmt: skip
        assert (await client.get(path)).status_code == 422, path
    for q in ("%00", "%0a", "%e2%80%ae", "wa%00taru"):  # control characters match nobody, never a 500
        answer = await client.get("/api/v1/users?q=" + q)
        assert (answer.status_code, answer.json()) == (200, {"users": []}), q


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_forged_and_tampered_cookies_open_nothing(world: World) -> None:
    """A random token, the real one altered, its hash, 10 kB, and non-base64: 401 each."""
    signed, _ = await world.signed_in("alice")
    real = next(v for k, v in signed.cookies.items() if k == "__Host-tw_session")
    altered = real[:-1] + ("A" if real[-1] != "A" else "B")
    for value in (new_token(), altered, token_hash(real), "x" * 10_000, "a b", "../../etc/passwd", "'; DROP"):
        client = world.client()
        client.cookies.set("__Host-tw_session", value, domain="console.test")
        assert (await client.get("/api/v1/me")).status_code == 401, value
    assert (await signed.get("/api/v1/me")).status_code == 200
    plain = world.client()  # the cookie without its __Host- prefix is not read over TLS
    plain.cookies.set("tw_session", real, domain="console.test")
    assert (await plain.get("/api/v1/me")).status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_session_record_naming_another_tenant_or_user_opens_nothing(world: World) -> None:
    """Redis records pointing at a user of another tenant, a missing user, or an old version: 401."""
    for user, tenant, version in (
        (world.ids["bob"], "acme", 2),
        (999_999, "acme", 1),
        (world.ids["alice"], "acme", 1),
    ):
        token = new_token()
        record = SessionRecord(user, tenant, version, "c", world.clock(), world.clock(), "x")
        fields: dict[Any, Any] = record.fields()
        await world.redis.hset(keys.session_key(token_hash(token)), mapping=fields)
        client = world.client()
        client.cookies.set("__Host-tw_session", token, domain="console.test")
        assert (await client.get("/api/v1/me")).status_code == 401, (user, tenant, version)
        assert await world.redis.exists(keys.session_key(token_hash(token))) == 0  # ended


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_another_sessions_csrf_token_does_not_pass(world: World) -> None:
    """alice's CSRF token sent with mika's session: 403."""
    _, alice_csrf = await world.signed_in("alice")
    mika, _ = await world.signed_in("mika")
    answer = await mika.patch("/api/v1/me", json={"name": "Pwned"}, headers={"X-CSRF-Token": alice_csrf})
    assert answer.status_code == 403


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_markup_in_a_name_is_shown_as_text(world: World) -> None:
    """A user named <script>...: the pages show it escaped, with a strict CSP and no framing."""
    update_user(world.engine, "acme", "wendy", {"name": '<script>alert("x")</script>'})
    client, _ = await world.signed_in("alice")
    page = await client.get(f"/users/{world.ids['wendy']}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'; frame-ancestors 'none'")
    assert (page.headers["x-frame-options"], page.headers["cache-control"]) == ("DENY", "no-store")
