"""The demo's ready sign-ins (telework/demo_sign_ins.py): three roles that can sign in, each seeing
what its role allows, kept across restarts in a private file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy.engine import Engine

from core.settings import ServerSettings
from telework.demo import ensure_demo
from telework.demo_sign_ins import SIGN_INS_FILE, SignIn, ensure_sign_ins, sign_in_lines
from web.credentials import find_account
from web.passwords import check, make_hasher, params_of
from web.principal import load_principal
from web.scope import Scope
from web.sessions import SessionRecord


def test_three_roles_sign_in_and_see_what_their_role_allows(engine: Engine, tmp_path: Path) -> None:
    """An administrator, a manager and a worker of the demo tenant: each password opens its account,
    the administrator sees every user, the manager the team (every demo worker and themselves), the
    worker only themselves; a second start keeps the passwords; the file is 0600."""
    settings = ServerSettings(data_dir=tmp_path)
    ensure_demo(engine, tmp_path, 3)
    first = ensure_sign_ins(engine, tmp_path, settings)
    assert [(s.role, s.login) for s in first] == [
        ("administrator", "admin"),
        ("manager", "manager"),
        ("worker", "user01"),
    ]
    hasher = make_hasher(params_of(settings))
    seen = {}
    for sign_in in first:
        account = find_account(engine, "demo", sign_in.login)
        assert account is not None and account.password_hash is not None
        assert check(hasher, account.password_hash, sign_in.password)[0] is True
        assert check(hasher, account.password_hash, sign_in.password + "x")[0] is False
        record = SessionRecord(account.user_id, "demo", account.version, "csrf", 0.0, 0.0, "127.0.0.1")
        principal = load_principal(engine, record)
        assert principal is not None
        seen[sign_in.role] = sorted(u.login for u in Scope(principal, engine).users())
    assert seen == {
        "administrator": ["admin", "manager", "user01", "user02", "user03"],
        "manager": ["manager", "user01", "user02", "user03"],
        "worker": ["user01"],
    }
    path = tmp_path / SIGN_INS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {s.login: s.password for s in first}
    assert ensure_sign_ins(engine, tmp_path, settings) == first  # a restart: the same sign-ins


def test_a_demo_without_agents_still_has_its_three_sign_ins(engine: Engine, tmp_path: Path) -> None:
    """`up --demo --agents 0`: no demo user exists yet; the worker's sign-in is made with its user."""
    ensure_demo(engine, tmp_path, 0)
    made = ensure_sign_ins(engine, tmp_path, ServerSettings(data_dir=tmp_path))
    assert [s.login for s in made] == ["admin", "manager", "user01"]
    account = find_account(engine, "demo", "user01")
    assert account is not None and account.password_hash is not None


def test_sign_in_lines_name_tenant_login_password_and_role() -> None:
    """One banner line per sign-in."""
    assert sign_in_lines([SignIn("manager", "manager", "pw")]) == [
        "  sign in:   tenant demo, login manager, password pw  (manager)"
    ]
