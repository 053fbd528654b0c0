"""The demo's ready sign-ins for the web console: an administrator, a manager and a worker of the
demo tenant, each with a password generated once into ``demo-sign-ins.json`` (0600) in the data
folder and kept across restarts.

The manager manages the group ``Demo team``, which holds every demo worker, so each role sees
what it should: the administrator the whole tenant, the manager the team, the worker only
themselves. Only `telework up --demo` makes them; a real deployment's first administrator gets a
one-time set-up link instead.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.private import write_private
from core.settings import ServerSettings
from storage.accounts import create_user
from storage.audit_trail import SYSTEM, AuditAction
from storage.models import Group, Membership, User, utcnow
from telework.demo import DEMO_TENANT

SIGN_INS_FILE = "demo-sign-ins.json"
TEAM = "Demo team"
ADMIN = ("admin", "Demo Administrator", "admin")
MANAGER = ("manager", "Demo Manager", "manager")
WORKER_LOGIN = "user01"  # demo-pc-01's user: the camera agent


@dataclass(frozen=True)
class SignIn:
    role: str
    login: str
    password: str


def sign_in_lines(sign_ins: list[SignIn]) -> list[str]:
    """Pure: the banner's lines naming each ready sign-in."""
    return [
        f"  sign in:   tenant {DEMO_TENANT}, login {s.login}, password {s.password}  ({s.role})"
        for s in sign_ins
    ]


def ensure_sign_ins(engine: Engine, data_dir: Path, settings: ServerSettings) -> list[SignIn]:
    """The demo's three sign-ins, made where missing (users, the team, passwords); the others are
    left as they are, so a password changed in the console stays changed."""
    from web.credentials import find_account, set_password
    from web.passwords import make_hasher, params_of

    path = data_dir / SIGN_INS_FILE
    saved = _read(path)
    ids = {login: _user(engine, login, name, role) for login, name, role in (ADMIN, MANAGER)}
    ids[WORKER_LOGIN] = _user(engine, WORKER_LOGIN, "Demo Worker", "worker")  # demo-pc-01's user, if any
    _team(engine, ids[MANAGER[0]])
    hasher = make_hasher(params_of(settings))
    out = []
    for role, login in (("administrator", ADMIN[0]), ("manager", MANAGER[0]), ("worker", WORKER_LOGIN)):
        account = find_account(engine, DEMO_TENANT, login)
        password = saved.get(login)
        if account is None or account.password_hash is None or password is None:
            password = secrets.token_urlsafe(12)
            now = utcnow().timestamp()
            set_password(
                engine, DEMO_TENANT, ids[login], hasher.hash(password), now=now,
                action=AuditAction.WEB_PASSWORD_SET, actor=SYSTEM, source=SYSTEM,
            )  # fmt: skip
        saved[login] = password
        out.append(SignIn(role, login, password))
    write_private(path, json.dumps(saved, indent=2))
    return out


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _user(engine: Engine, login: str, name: str, role: str) -> int:
    with Session(engine) as s:
        found = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == DEMO_TENANT, col(User.login) == login)
        ).scalar_one_or_none()
    if found is not None:
        return int(found)
    return create_user(engine, DEMO_TENANT, login, name, role)


def _team(engine: Engine, manager_id: int) -> None:
    """The group of every demo worker, managed by the demo manager (what is missing is added)."""
    with Session(engine) as s:
        group = s.execute(
            select(Group).where(col(Group.tenant_id) == DEMO_TENANT, col(Group.name) == TEAM)
        ).scalar_one_or_none()
        if group is None:
            group = Group(tenant_id=DEMO_TENANT, name=TEAM, created_at=utcnow())
            s.add(group)
            s.flush()
        assert group.id is not None
        workers = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == DEMO_TENANT, col(User.role) == "worker")
        ).scalars()
        wanted = {(int(uid), "member") for uid in workers} | {(manager_id, "manager")}
        rows = s.execute(
            select(col(Membership.user_id), col(Membership.role)).where(col(Membership.group_id) == group.id)
        )
        held = {(int(uid), str(role)) for uid, role in rows}
        for user_id, role in sorted(wanted - held):
            s.add(
                Membership(
                    group_id=group.id, user_id=user_id, role=role, tenant_id=DEMO_TENANT, created_at=utcnow()
                )
            )
        s.commit()
