"""The TOTP second factor against real Redis and databases: enrol, sign in with a code, replay,
limits, recovery codes, turning off, an administrator's reset, the pages' second step."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.web_models import RecoveryCode, SecondFactor
from tests.web_world import PASSWORD, World, make_world
from web import totp
from web.code_wait import wait_key
from web.sessions import token_hash


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def code_now(world: World, secret: str, drift: int = 0) -> str:
    return totp.code_at(secret, totp.step_of(world.clock()) + drift)


async def turn_on(world: World, login: str) -> tuple[str, list[str]]:
    """``login`` enrols and confirms a second factor through the API; the secret and recovery codes."""
    client, csrf = await world.signed_in(login)
    begun = await client.post("/api/v1/me/second-factor", headers={"X-CSRF-Token": csrf})
    assert begun.status_code == 201, begun.text
    secret = begun.json()["secret"]
    confirmed = await client.post(
        "/api/v1/me/second-factor/confirm",
        json={"code": code_now(world, secret)},
        headers={"X-CSRF-Token": csrf},
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret, confirmed.json()["recovery_codes"]


async def password_step(world: World, login: str, tenant: str = "acme") -> tuple[httpx.AsyncClient, str]:
    """A client whose password step answered 'code needed'; its wait token."""
    client = world.client()
    answer = await client.post(
        "/api/v1/session", json={"tenant": tenant, "login": login, "password": PASSWORD}
    )
    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert body["error"] == "second_factor_needed"
    assert "set-cookie" not in answer.headers
    return client, str(body["wait_token"])


def actions(engine: Engine, target: int) -> list[tuple[str, str, dict[str, object]]]:
    with Session(engine) as s:
        rows = s.execute(
            select(col(AuditEntry.action), col(AuditEntry.actor), col(AuditEntry.detail))
            .where(
                col(AuditEntry.target) == f"user:{target}", col(AuditEntry.action).like("web.second_factor%")
            )
            .order_by(col(AuditEntry.seq))
        ).all()
    return [(a, actor, d) for a, actor, d in rows]


async def test_enrolment_shows_the_secret_as_uri_and_qr_and_is_on_only_after_a_code(world: World) -> None:
    """Enrolling gives secret, otpauth URI and SVG; a wrong code is refused; a right one turns it on."""
    client, csrf = await world.signed_in("mika")
    begun = await client.post("/api/v1/me/second-factor", headers={"X-CSRF-Token": csrf})
    assert begun.status_code == 201
    body = begun.json()
    assert body["otpauth_uri"] == totp.otpauth_uri(body["secret"], "acme", "mika")
    assert body["qr_svg"].startswith("<svg ")
    assert (await client.get("/api/v1/me/second-factor")).json() == {
        "state": "enrolling", "enabled_at": None, "recovery_codes_left": 0,
    }  # fmt: skip
    await world.signed_in("mika")  # not on yet: the password alone still signs in
    wrong = f"{(int(code_now(world, body['secret'])) + 1) % 1_000_000:06d}"
    refused = await client.post(
        "/api/v1/me/second-factor/confirm", json={"code": wrong}, headers={"X-CSRF-Token": csrf}
    )
    assert (refused.status_code, refused.json()["error"]) == (422, "second_factor_wrong_code")
    confirmed = await client.post(
        "/api/v1/me/second-factor/confirm",
        json={"code": code_now(world, body["secret"])},
        headers={"X-CSRF-Token": csrf},
    )
    assert confirmed.status_code == 200
    assert len(confirmed.json()["recovery_codes"]) == 10
    state = (await client.get("/api/v1/me/second-factor")).json()
    assert (state["state"], state["recovery_codes_left"]) == ("on", 10)
    assert [a for a, _, _ in actions(world.engine, world.ids["mika"])] == [
        "web.second_factor_enrol", "web.second_factor_on",
    ]  # fmt: skip
    again = await client.post("/api/v1/me/second-factor", headers={"X-CSRF-Token": csrf})
    assert (again.status_code, again.json()["error"]) == (409, "second_factor_already_on")


async def test_the_secret_is_sealed_and_recovery_codes_are_stored_hashed(world: World) -> None:
    """The database holds an encrypted secret (not its text) and only sha256 of recovery codes."""
    secret, codes = await turn_on(world, "alice")
    with Session(world.engine) as s:
        row = s.get(SecondFactor, world.ids["alice"])
        hashes = set(s.execute(select(col(RecoveryCode.code_hash))).scalars())
    assert row is not None and row.secret_sealed.startswith(b"TWE1")
    assert secret.encode() not in row.secret_sealed
    assert hashes == {totp.recovery_hash(c) for c in codes}
    assert not any(c.replace("-", "") in h for c in codes for h in hashes)


async def test_sign_in_asks_for_the_code_and_begins_the_session_only_with_it(world: World) -> None:
    """Password right: 401 second_factor_needed, a wait in Redis expiring soon, no cookie; code: session."""
    secret, _ = await turn_on(world, "mika")
    world.clock.advance(30)
    client, wait = await password_step(world, "mika")
    ttl = await world.redis.ttl(wait_key(token_hash(wait)))
    assert 0 < ttl <= world.settings.web_code_wait_s
    assert (await client.get("/api/v1/me")).status_code == 401
    done = await client.post(
        "/api/v1/session/code", json={"wait_token": wait, "code": code_now(world, secret)}
    )
    assert done.status_code == 200, done.text
    assert done.json()["login"] == "mika"
    assert re.match(r"__Host-tw_session=", done.headers["set-cookie"])
    assert (await client.get("/api/v1/me")).status_code == 200
    assert await world.redis.exists(wait_key(token_hash(wait))) == 0
    reused = await client.post(
        "/api/v1/session/code", json={"wait_token": wait, "code": code_now(world, secret)}
    )
    assert (reused.status_code, reused.json()["error"]) == (401, "second_factor_wait_over")


async def test_a_code_is_accepted_once(world: World) -> None:
    """The code that signed in is refused to the next sign-in (replay); the next step's code works."""
    secret, _ = await turn_on(world, "mika")
    world.clock.advance(30)
    code = code_now(world, secret)
    client, wait = await password_step(world, "mika")
    assert (
        await client.post("/api/v1/session/code", json={"wait_token": wait, "code": code})
    ).status_code == 200
    client, wait = await password_step(world, "mika")
    replay = await client.post("/api/v1/session/code", json={"wait_token": wait, "code": code})
    assert (replay.status_code, replay.json()["error"]) == (401, "second_factor_wrong_code")
    world.clock.advance(30)
    fresh = await client.post(
        "/api/v1/session/code", json={"wait_token": wait, "code": code_now(world, secret)}
    )
    assert fresh.status_code == 200


async def test_wrong_codes_are_limited_like_passwords(world: World) -> None:
    """After the account's failures (3 here) a further code is refused 429 even if right; all audited."""
    secret, _ = await turn_on(world, "mika")
    world.clock.advance(30)
    client, wait = await password_step(world, "mika")
    wrong = f"{(int(code_now(world, secret)) + 500_000) % 1_000_000:06d}"
    for _ in range(3):
        answer = await client.post("/api/v1/session/code", json={"wait_token": wait, "code": wrong})
        assert answer.status_code == 401
    blocked = await client.post(
        "/api/v1/session/code", json={"wait_token": wait, "code": code_now(world, secret)}
    )
    assert (blocked.status_code, blocked.json()["error"]) == (429, "too_many")
    assert int(blocked.headers["retry-after"]) > 0
    with Session(world.engine) as s:
        refusals = s.execute(
            select(col(AuditEntry.detail)).where(
                col(AuditEntry.action) == "web.sign_in_refused",
                col(AuditEntry.target) == f"user:{world.ids['mika']}",
            )
        ).scalars()
        assert [d["reason"] for d in refusals] == ["code"] * 3


async def test_a_recovery_code_signs_in_once(world: World) -> None:
    """A recovery code (typed in lower case) replaces the app's code, once; one fewer is left."""
    _, codes = await turn_on(world, "ben")
    client, wait = await password_step(world, "ben", "beta")
    typed = codes[3].lower()
    assert (
        await client.post("/api/v1/session/code", json={"wait_token": wait, "code": typed})
    ).status_code == 200
    assert (await client.get("/api/v1/me/second-factor")).json()["recovery_codes_left"] == 9
    client, wait = await password_step(world, "ben", "beta")
    again = await client.post("/api/v1/session/code", json={"wait_token": wait, "code": codes[3]})
    assert again.status_code == 401


async def test_an_unknown_wait_is_refused_as_over(world: World) -> None:
    """A made-up or malformed wait token: 401 second_factor_wait_over, nothing else said."""
    client = world.client()
    for wait in ("A" * 43, "not a token!"):
        answer = await client.post("/api/v1/session/code", json={"wait_token": wait, "code": "123456"})
        assert (answer.status_code, answer.json()["error"]) == (401, "second_factor_wait_over")


async def test_turning_off_needs_the_password_or_a_code(world: World) -> None:
    """Nothing: 422; a wrong password: 422; a current code: off, audited; then the password alone signs in."""
    secret, _ = await turn_on(world, "mika")
    world.clock.advance(30)
    client, wait = await password_step(world, "mika")
    await client.post("/api/v1/session/code", json={"wait_token": wait, "code": code_now(world, secret)})
    csrf = (await client.get("/api/v1/me")).json()["csrf_token"]
    headers = {"X-CSRF-Token": csrf}
    nothing = await client.post("/api/v1/me/second-factor/off", json={}, headers=headers)
    assert (nothing.status_code, nothing.json()["error"]) == (422, "second_factor_proof_needed")
    wrong = await client.post(
        "/api/v1/me/second-factor/off", json={"password": "nope nope nope"}, headers=headers
    )
    assert (wrong.status_code, wrong.json()["error"]) == (422, "second_factor_proof_wrong")
    world.clock.advance(30)
    off = await client.post(
        "/api/v1/me/second-factor/off", json={"code": code_now(world, secret)}, headers=headers
    )
    assert off.status_code == 204
    assert (await client.get("/api/v1/me/second-factor")).json()["state"] == "off"
    await world.signed_in("mika")
    last = actions(world.engine, world.ids["mika"])[-1]
    assert (last[0], last[1], last[2]["proof"]) == (
        "web.second_factor_off",
        f"user:{world.ids['mika']}",
        "code",
    )


async def test_workers_have_no_second_factor(world: World) -> None:
    """A worker's enrolment is refused 403 second_factor_role."""
    client, csrf = await world.signed_in("wataru")
    answer = await client.post("/api/v1/me/second-factor", headers={"X-CSRF-Token": csrf})
    assert (answer.status_code, answer.json()["error"]) == (403, "second_factor_role")


async def test_an_administrator_resets_a_second_factor_and_it_is_audited(world: World) -> None:
    """alice resets mika's (audited as alice); mika may not reset (403); beta cannot see mika (404)."""
    callers = {login: await world.signed_in(login) for login in ("mika", "wataru", "bob")}
    await turn_on(world, "mika")  # mika's session of before stays
    mika = world.ids["mika"]
    for login, status in (("mika", 403), ("wataru", 404), ("bob", 404)):
        client, csrf = callers[login]
        answer = await client.delete(f"/api/v1/users/{mika}/second-factor", headers={"X-CSRF-Token": csrf})
        assert answer.status_code == status, login
    alice, csrf = await world.signed_in("alice")
    answer = await alice.delete(f"/api/v1/users/{mika}/second-factor", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 204
    last = actions(world.engine, mika)[-1]
    assert (last[0], last[1], last[2]["was"]) == (
        "web.second_factor_reset",
        f"user:{world.ids['alice']}",
        "on",
    )
    await world.signed_in("mika")  # the password alone signs in again


async def test_a_manager_may_see_but_not_reset_a_member(world: World) -> None:
    """mika sees wataru (a member of sales) but a reset is an administrator's: 403."""
    client, csrf = await world.signed_in("mika")
    answer = await client.delete(
        f"/api/v1/users/{world.ids['wataru']}/second-factor", headers={"X-CSRF-Token": csrf}
    )
    assert (answer.status_code, answer.json()["error"]) == (403, "forbidden")


def pre_of(html: str) -> str:
    match = re.search(r'name="pre" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


async def test_the_sign_in_page_asks_for_the_code_on_a_page_of_its_own(world: World) -> None:
    """Form sign-in: 303 to /signin/code, a Strict wait cookie, no session; the code: /users and a session."""
    secret, _ = await turn_on(world, "mika")
    world.clock.advance(30)
    client = world.client()
    pre = pre_of((await client.get("/signin")).text)
    answer = await client.post(
        "/signin", data={"tenant": "acme", "login": "mika", "password": PASSWORD, "pre": pre}
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/signin/code")
    cookie = answer.headers["set-cookie"]
    assert re.fullmatch(
        r"__Host-tw_code_wait=[A-Za-z0-9_-]{43}; HttpOnly; Max-Age=300; Path=/; SameSite=strict; Secure",
        cookie,
    ), cookie
    assert "tw_session" not in cookie
    page = await client.get("/signin/code")
    assert page.status_code == 200 and 'name="code"' in page.text
    wrong = await client.post(
        "/signin/code", data={"code": "000000" if code_now(world, secret) != "000000" else "1"}
    )
    assert wrong.status_code == 401
    done = await client.post("/signin/code", data={"code": code_now(world, secret)})
    assert (done.status_code, done.headers["location"]) == (303, "/users")
    assert (await client.get("/api/v1/me")).json()["login"] == "mika"


async def test_the_profile_page_enrols_with_an_inline_qr_code_and_shows_recovery_codes_once(
    world: World,
) -> None:
    """The page flow: begin (303), the page shows the inline SVG and URI, confirm shows 10 codes, then on."""
    client, csrf = await world.signed_in("alice")
    begun = await client.post("/profile/second-factor", data={"csrf": csrf})
    assert (begun.status_code, begun.headers["location"]) == (303, "/profile/second-factor")
    page = await client.get("/profile/second-factor")
    assert "<svg " in page.text and "otpauth://totp/" in page.text
    secret = re.search(r"secret=([A-Z2-7]{32})", page.text)
    assert secret is not None
    shown = await client.post(
        "/profile/second-factor/confirm", data={"csrf": csrf, "code": code_now(world, secret.group(1))}
    )
    assert shown.status_code == 200
    assert len(re.findall(r"<code>[A-Z2-7]{4}(?:-[A-Z2-7]{4}){3}</code>", shown.text)) == 10
    later = await client.get("/profile/second-factor")
    assert "<svg " not in later.text and not re.search(r"<code>[A-Z2-7]{4}-", later.text)


async def test_two_sign_ins_with_the_same_code_at_once_begin_one_session(world: World) -> None:
    """The same code sent by two waiting sign-ins at the same moment: exactly one 200, the other 401."""
    secret, _ = await turn_on(world, "alice")
    world.clock.advance(30)
    code = code_now(world, secret)
    (one, wait_one), (two, wait_two) = [await password_step(world, "alice") for _ in range(2)]
    answers = await asyncio.gather(
        one.post("/api/v1/session/code", json={"wait_token": wait_one, "code": code}),
        two.post("/api/v1/session/code", json={"wait_token": wait_two, "code": code}),
    )
    assert sorted(a.status_code for a in answers) == [200, 401]


async def test_a_wait_ends_after_five_wrong_codes(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """With loose limits, the fifth wrong code ends the wait: the right code then finds it over."""
    async with make_world(tmp_path, database_url, engine, redis_url, web_fails_per_account=100) as world:
        secret, _ = await turn_on(world, "mika")
        world.clock.advance(30)
        client, wait = await password_step(world, "mika")
        wrong = f"{(int(code_now(world, secret)) + 500_000) % 1_000_000:06d}"
        for _ in range(5):
            answer = await client.post("/api/v1/session/code", json={"wait_token": wait, "code": wrong})
            assert answer.json()["error"] == "second_factor_wrong_code"
        assert await world.redis.exists(wait_key(token_hash(wait))) == 0
        late = await client.post(
            "/api/v1/session/code", json={"wait_token": wait, "code": code_now(world, secret)}
        )
        assert (late.status_code, late.json()["error"]) == (401, "second_factor_wait_over")
