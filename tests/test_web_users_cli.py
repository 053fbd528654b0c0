"""``telework admin tenant create ID --admin EMAIL``: the tenant, its administrator and a one-time set-up
link printed once, that sets the administrator's console password."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from storage import directory
from storage.account_rules import AccountError
from telework.cli_accounts import admin_email
from tests.admin_world import WHO, admin, entries, run
from web.credentials import find_account, redeem_setup_code

__all__ = ["admin"]  # the fixture
BASE = "https://console.example.jp"


def test_tenant_create_with_admin_prints_a_link_that_sets_the_password(
    admin: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The administrator (login = e-mail, Japanese for Asia/Tokyo) exists; the link works once; audited."""
    monkeypatch.setenv("TELEWORK_WEB_BASE_URL", BASE)
    code, out, err = run(
        ["admin", "tenant", "create", "acme", "--name", "Acme", "--admin", "boss@acme.jp"], capsys
    )
    assert (code, err) == (0, "")
    (user,) = directory.users(admin, "acme")
    assert (user.login, user.name, user.role, user.language, user.enabled) == (
        "boss@acme.jp", "boss@acme.jp", "admin", "ja", True,
    )  # fmt: skip
    match = re.fullmatch(
        "tenant acme created\n"
        f"administrator boss@acme.jp created \\(id {user.id}\\)\n"
        "one-time set-up link \\(valid 72 h; it sets their console password\\): "
        + re.escape(BASE)
        + "/setup#([A-Za-z0-9_-]{43})\n",
        out,
    )
    assert match is not None, out
    secret = match.group(1)
    assert redeem_setup_code(admin, secret, "$argon2id$stand-in", now=time.time(), source="test") == (
        "acme", user.id,
    )  # fmt: skip
    account = find_account(admin, "acme", "boss@acme.jp")
    assert account is not None and account.password_hash == "$argon2id$stand-in"
    actions = [(a, t, actor) for a, t, _, actor, _ in entries(admin)]
    assert actions[:3] == [
        ("tenant.create", "tenant:acme", WHO),
        ("user.create", f"user:{user.id}", WHO),
        ("web.setup_code_issue", f"user:{user.id}", WHO),
    ]
    assert secret not in str(entries(admin))


def test_a_tenant_outside_japan_gets_an_english_administrator(
    admin: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """--time-zone Europe/Berlin: the administrator's console language is English."""
    argv = [
        "admin",
        "tenant",
        "create",
        "eu",
        "--name",
        "EU",
        "--time-zone",
        "Europe/Berlin",
        "--admin",
        "a@eu.example",
    ]
    assert run(argv, capsys)[0] == 0
    (user,) = directory.users(admin, "eu")
    assert (user.login, user.language) == ("a@eu.example", "en")


def test_a_bad_admin_address_is_refused_before_the_tenant_is_made(
    admin: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 naming what was expected; no tenant."""
    code, out, err = run(["admin", "tenant", "create", "acme", "--name", "Acme", "--admin", "boss"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "telework admin: error: --admin: expected an e-mail address such as admin@example.com, got 'boss'\n"
    )
    assert directory.tenants(admin) == []


@given(st.text(max_size=40))
def test_admin_email_takes_only_local_at_domain_without_spaces(value: str) -> None:
    """Accepted values are stripped, have a local part, an '@' and a dotted domain, and no whitespace."""
    try:
        got = admin_email(value)
    except AccountError as exc:
        assert str(exc).startswith(("--admin: expected an e-mail address", "login: expected"))
    else:
        local, _, domain = got.rpartition("@")
        assert got == value.strip() and local and "." in domain.strip(".")
        assert not any(c.isspace() for c in got)
