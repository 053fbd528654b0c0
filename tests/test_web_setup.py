"""One-time set-up codes: a link with a random code stored hashed, used once, before it expires."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.account_changes import update_user
from storage.audit_models import AuditEntry
from storage.web_models import SetupCode
from tests.web_world import BASE, PASSWORD, World, make_world
from web.credentials import CredentialError, issue_setup_code
from web.sessions import token_hash

NEW = "a brand new password"


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def issue(world: World, login: str = "wendy", ttl_s: int = 3600) -> str:
    """A set-up link for ``login`` of acme; returns its code."""
    link = issue_setup_code(
        world.engine, "acme", world.ids[login], base_url=world.settings.web_base_url, ttl_s=ttl_s,
        now=world.clock(), actor="cli:root", source="cli:root",
    )  # fmt: skip
    match = re.fullmatch(re.escape(BASE) + r"/setup#([A-Za-z0-9_-]{43})", link)
    assert match is not None, link
    return match.group(1)


async def redeem(client: httpx.AsyncClient, code: str, password: str = NEW) -> httpx.Response:
    page = await client.get("/setup")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)
    assert page.status_code == 200 and pre is not None
    assert '<script src="/static/setup.js"></script>' in page.text
    return await client.post("/setup", data={"code": code, "password": password, "pre": pre.group(1)})


async def sign_in(world: World, password: str) -> int:
    answer = await world.client().post(
        "/api/v1/session", json={"tenant": "acme", "login": "wendy", "password": password}
    )
    return answer.status_code


async def test_a_set_up_code_sets_the_password_once(world: World) -> None:
    """The code sets the password (200), ends the user's sessions, and a replay is refused (400)."""
    before, _ = await world.signed_in("wendy")
    code = issue(world)
    done = await redeem(world.client(), code)
    assert done.status_code == 200 and "パスワードを設定しました。" in done.text
    assert (await before.get("/api/v1/me")).status_code == 401
    assert (await sign_in(world, NEW), await sign_in(world, PASSWORD)) == (200, 401)
    replay = await redeem(world.client(), code, "yet another password")
    assert replay.status_code == 400 and "この設定リンクは無効です" in replay.text
    assert await sign_in(world, "yet another password") == 401


async def test_the_code_is_stored_only_as_its_hash_and_audited_without_it(world: World) -> None:
    """The row holds sha256(code) with its expiry; neither the database nor the audit log holds the code."""
    code = issue(world, ttl_s=900)
    with Session(world.engine) as s:
        rows = list(s.execute(select(SetupCode)).scalars())
        audit = s.execute(
            select(col(AuditEntry.action), col(AuditEntry.actor), col(AuditEntry.detail)).where(
                col(AuditEntry.action) == "web.setup_code_issue"
            )
        ).all()
        dump = str(s.execute(text("SELECT * FROM web_setup_code")).all()) + str(
            s.execute(text("SELECT * FROM audit_log")).all()
        )
    assert [(r.code_hash, r.user_id, r.used_at) for r in rows] == [
        (token_hash(code), world.ids["wendy"], None)
    ]
    assert (rows[0].expires_at.timestamp() - rows[0].created_at.timestamp()) == 900
    assert [tuple(a) for a in audit] == [
        ("web.setup_code_issue", "cli:root", {"source": "cli:root", "expires_in_s": 900})
    ]
    assert code not in dump


async def test_an_expired_code_is_refused(world: World) -> None:
    """A code used after its time to live: 400, the password unchanged."""
    code = issue(world, ttl_s=900)
    world.clock.advance(900)
    assert (await redeem(world.client(), code)).status_code == 400
    assert await sign_in(world, PASSWORD) == 200


async def test_a_new_code_replaces_the_earlier_one(world: World) -> None:
    """Issuing again: the first code stops working, the second works."""
    first = issue(world)
    second = issue(world)
    assert (await redeem(world.client(), first)).status_code == 400
    assert (await redeem(world.client(), second)).status_code == 200


async def test_a_code_of_a_disabled_user_or_a_mistyped_one_is_refused(world: World) -> None:
    """Disabled user, mistyped, long, control characters: 400 (past the field limit 422); the code stays."""
    code = issue(world)
    update_user(world.engine, "acme", "wendy", {"enabled": False})
    assert (await redeem(world.client(), code)).status_code == 400
    update_user(world.engine, "acme", "wendy", {"enabled": True})
    for bad in (code[:-1] + ("A" if code[-1] != "A" else "B"), "x" * 900, "abc\x00def", "../../etc"):
        assert (await redeem(world.client(), bad)).status_code == 400, bad
    assert (await redeem(world.client(), "x" * 2000)).status_code == 422  # past the form's field limit
    assert (await redeem(world.client(), code)).status_code == 200  # still unused


async def test_a_bad_new_password_leaves_the_code_unused(world: World) -> None:
    """A too-short password: 422 with the reason; the code still works afterwards."""
    code = issue(world)
    short = await redeem(world.client(), code, "short")
    assert short.status_code == 422 and "パスワードは10文字以上必要です。" in short.text
    assert (await redeem(world.client(), code)).status_code == 200


async def test_no_code_or_password_reaches_the_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Issuing, redeeming, replaying and signing in log nothing that contains the code or a password."""
    caplog.set_level(logging.DEBUG)
    code = issue(world)
    await redeem(world.client(), code)
    await redeem(world.client(), code)
    await sign_in(world, NEW)
    await sign_in(world, "not the password")
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (code, NEW, "not the password", PASSWORD):
        assert secret not in logged


def test_issuing_for_a_user_of_another_tenant_is_refused(world: World) -> None:
    """A set-up code for beta's user asked under acme: CredentialError, nothing stored."""
    with pytest.raises(CredentialError) as err:
        issue_setup_code(world.engine, "acme", world.ids["bill"], base_url=BASE, ttl_s=600, now=world.clock())
    assert str(err.value) == f"user {world.ids['bill']} does not exist in tenant 'acme'"
    with Session(world.engine) as s:
        assert list(s.execute(select(SetupCode)).scalars()) == []
