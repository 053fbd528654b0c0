"""``telework admin tenant | user | agent``: create, list, show, update, terminate, reinstate.

Wired into :mod:`telework.cli` by :func:`add_admin_parsers` (under ``admin``). The work is done by
:mod:`storage.accounts`, :mod:`storage.account_changes` and :mod:`storage.directory`; every change
is audited there with the OS user as actor and source (``cli:<user>``). Lists are plain aligned
tables; an unknown tenant is one line on stderr and exit code 2. ``admin agent``:
:mod:`telework.cli_devices`.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.logs import printable
from telework.cli_base import data_dir_option, open_admin, table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from core.settings import ServerSettings
    from storage.directory import TenantSummary


def when(moment: datetime | None) -> str:
    """Pure: ``2026-12-01T09:00:00+00:00`` (UTC, seconds), or ``-``."""
    from storage.models import as_utc

    return "-" if moment is None else as_utc(moment).isoformat(timespec="seconds")


def who() -> dict[str, str]:
    """The actor and source of a change made from the command line: ``cli:<OS user>``."""
    from storage.audit_trail import cli_actor

    who = cli_actor()
    return {"actor": who, "source": who}


def _changed(what: str, done: dict[str, list[Any]]) -> None:
    if not done:
        print(f"{what} unchanged: it already has these values")
        return
    print(f"{what} changed:")
    for name, (old, new) in done.items():
        print(f"  {name}: {printable(str(old))} -> {printable(str(new))}")


# ------------------------------------------------------------------ tenants


def cmd_tenant(args: argparse.Namespace) -> int:
    from storage import account_changes, accounts, directory
    from storage.models import utcnow

    settings, engine = open_admin(args)
    try:
        if args.action == "create":
            email = None if args.admin is None else admin_email(args.admin)
            accounts.create_tenant(engine, args.id, args.name, args.time_zone, **who())
            print(f"tenant {args.id} created")
            if email is not None:
                _first_admin(settings, engine, args.id, email)
        elif args.action == "list":
            _print_tenants(directory.tenants(engine))
        elif args.action == "show":
            (summary,) = directory.tenants(engine, args.id)
            _print_tenant(summary, settings.terminated_erase_days)
        elif args.action == "update":
            changes = {k: v for k, v in (("name", args.name), ("time_zone", args.time_zone)) if v is not None}
            if not changes:
                raise accounts.AccountError("expected --name or --time-zone, got neither")
            _changed(f"tenant {args.id}", account_changes.update_tenant(engine, args.id, changes, **who()))
        elif args.action == "terminate":
            if not args.yes:
                raise accounts.AccountError(
                    f"terminating tenant {args.id} refuses its agents and erases its face data in "
                    f"{settings.terminated_erase_days} days; add --yes to confirm"
                )
            at = account_changes.terminate_tenant(engine, args.id, utcnow(), **who())
            erase = account_changes.face_erase_at(at, settings.terminated_erase_days)
            print(
                f"tenant {args.id} terminated at {when(at)}; its agents are refused; its face data is "
                f"erased from {when(erase)} (reinstate it before then to keep it)"
            )
        else:
            account_changes.reinstate_tenant(
                engine, args.id, utcnow(), settings.terminated_erase_days, **who()
            )
            print(f"tenant {args.id} reinstated; its agents are let in again")
    finally:
        engine.dispose()
    return 0


def admin_email(value: str) -> str:
    """Pure: the e-mail address of a tenant's first administrator (their login), stripped; AccountError
    unless it is ``local@domain`` without spaces."""
    from storage.account_rules import AccountError, login

    clean = value.strip()
    local, at, domain = clean.rpartition("@")
    if not at or not local or not domain or "." not in domain.strip(".") or any(c.isspace() for c in clean):
        raise AccountError(f"--admin: expected an e-mail address such as admin@example.com, got {value!r}")
    return login(clean)


def _first_admin(settings: ServerSettings, engine: Engine, tenant: str, email: str) -> None:
    """The tenant's administrator (login = the e-mail) and their one-time set-up link, printed once."""
    import time

    from sqlmodel import Session

    from storage import accounts
    from web.credentials import issue_setup_code

    with Session(engine) as s:
        zone = accounts.get_tenant(s, tenant).time_zone
    language = "ja" if zone == "Asia/Tokyo" else "en"  # the console's choice for a tenant in Japan
    user_id = accounts.create_user(engine, tenant, email, email, "admin", language=language, **who())
    link = issue_setup_code(
        engine, tenant, user_id, base_url=settings.web_base_url, ttl_s=settings.web_setup_code_ttl_s,
        now=time.time(), actor=who()["actor"], source=who()["source"],
    )  # fmt: skip
    hours = settings.web_setup_code_ttl_s // 3600
    print(f"administrator {email} created (id {user_id})")
    print(f"one-time set-up link (valid {hours} h; it sets their console password): {link}")


def _print_tenants(rows: list[TenantSummary]) -> None:
    for line in table(
        ("ID", "NAME", "TIME ZONE", "USERS", "AGENTS", "CREATED", "TERMINATED"),
        [
            (
                t.id,
                t.name,
                t.time_zone,
                str(t.users),
                str(t.agents),
                when(t.created_at),
                when(t.terminated_at),
            )
            for t in rows
        ],
    ):
        print(line)


def _print_tenant(t: TenantSummary, erase_days: int) -> None:
    from storage.account_changes import face_erase_at

    lines = [
        ("id", t.id),
        ("name", t.name),
        ("time zone", t.time_zone),
        ("created", when(t.created_at)),
        ("terminated", when(t.terminated_at)),
    ]
    if t.terminated_at is not None:
        lines.append(("face data erased from", when(face_erase_at(t.terminated_at, erase_days))))
    lines += [
        ("users", str(t.users)),
        ("agents", f"{t.agents} active, {t.revoked_agents} revoked"),
        ("tasks offered", str(t.tasks)),
    ]
    for line in table(("FIELD", "VALUE"), lines)[1:]:
        print(line)


# -------------------------------------------------------------------- users


def cmd_user(args: argparse.Namespace) -> int:
    from storage import account_changes, accounts, directory

    _settings, engine = open_admin(args)
    try:
        if args.action == "create":
            uid = accounts.create_user(
                engine, args.tenant, args.login, args.name, args.role,
                language=args.language, time_zone=args.time_zone, **who(),
            )  # fmt: skip
            print(f"user {args.login} created in tenant {args.tenant} (id {uid})")
        elif args.action == "list":
            rows = directory.users(engine, args.tenant)
            for line in table(
                ("ID", "LOGIN", "NAME", "ROLE", "LANGUAGE", "TIME ZONE", "ENABLED", "CREATED"),
                [
                    (
                        str(u.id), u.login, u.name, u.role, u.language, u.time_zone or "(tenant's)",
                        "yes" if u.enabled else "no", when(u.created_at),
                    )
                    for u in rows
                ],
            ):  # fmt: skip
                print(line)
        else:
            changes = _user_changes(args)
            if not changes:
                raise accounts.AccountError(
                    "expected at least one of --name, --login, --language, --time-zone, "
                    "--tenant-time-zone, --role, --enable, --disable; got none"
                )
            _uid, done = account_changes.update_user(engine, args.tenant, args.login, changes, **who())
            _changed(f"user {args.login} of tenant {args.tenant}", done)
    finally:
        engine.dispose()
    return 0


def _user_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {
        name: getattr(args, dest)
        for name, dest in (
            ("name", "name"),
            ("login", "new_login"),
            ("language", "language"),
            ("role", "role"),
        )
        if getattr(args, dest) is not None
    }
    if args.time_zone is not None:
        changes["time_zone"] = args.time_zone
    if args.tenant_time_zone:
        changes["time_zone"] = None
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    return changes


# ------------------------------------------------------------------ parsing


def add_admin_parsers(
    objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    """Register ``admin tenant``, ``admin user`` and ``admin agent`` on the ``admin`` sub-parsers."""
    from telework.cli_devices import add_agent_parsers

    _tenant_parsers(objs, parser_class)
    _user_parsers(objs, parser_class)
    add_agent_parsers(objs, parser_class)


def _tenant_parsers(
    objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    tenant = objs.add_parser("tenant", help="tenants", description="Tenants.")
    ts = tenant.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    p = ts.add_parser("create", help="create a tenant", description="Create a tenant.")
    data_dir_option(p)
    p.add_argument("id", help="tenant id (lowercase slug)")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--time-zone", default="Asia/Tokyo", help="IANA time zone (default Asia/Tokyo)")
    p.add_argument(
        "--admin",
        metavar="EMAIL",
        help="also create its administrator (login EMAIL); prints a one-time set-up link",
    )
    p.set_defaults(func=cmd_tenant)
    p = ts.add_parser("list", help="list the tenants", description="Print every tenant with its counts.")
    data_dir_option(p)
    p.set_defaults(func=cmd_tenant)
    for action, text, description in (
        ("show", "show a tenant", "Print a tenant's details and counts."),
        ("reinstate", "lift a termination", "Lift a tenant's termination, before its face data is erased."),
    ):
        p = ts.add_parser(action, help=text, description=description)
        data_dir_option(p)
        p.add_argument("id", help="tenant id")
        p.set_defaults(func=cmd_tenant)
    p = ts.add_parser(
        "update",
        help="change a tenant's name or time zone",
        description="Change a tenant's name or time zone.",
    )
    data_dir_option(p)
    p.add_argument("id", help="tenant id")
    p.add_argument("--name", help="new display name")
    p.add_argument("--time-zone", help="new IANA time zone, e.g. Asia/Tokyo")
    p.set_defaults(func=cmd_tenant)
    p = ts.add_parser(
        "terminate",
        help="terminate a tenant (agents refused; face data erased after TELEWORK_TERMINATED_ERASE_DAYS)",
        description="Terminate a tenant: its agents are refused, it takes no new users or agents, and "
        "its face data is erased TELEWORK_TERMINATED_ERASE_DAYS (30) days later.",
    )
    data_dir_option(p)
    p.add_argument("id", help="tenant id")
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=cmd_tenant)


def _user_parsers(objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]) -> None:
    user = objs.add_parser("user", help="users", description="Users.")
    us = user.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    p = us.add_parser("create", help="create a user", description="Create a user in a tenant.")
    data_dir_option(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.add_argument("login", help="login name")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--role", default="worker", help="admin, manager or worker (default worker)")
    p.add_argument("--language", default="ja", help="ja or en (default ja)")
    p.add_argument("--time-zone", help="IANA time zone (default: the tenant's)")
    p.set_defaults(func=cmd_user)
    p = us.add_parser("list", help="list a tenant's users", description="Print a tenant's users.")
    data_dir_option(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.set_defaults(func=cmd_user)
    p = us.add_parser(
        "update",
        help="correct a user's data (audited old -> new)",
        description="Correct a user's name, login, language, time zone, role or enabled flag. A disabled "
        "user's agents are refused until the user is enabled again.",
    )
    data_dir_option(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.add_argument("login", help="the user's current login")
    p.add_argument("--name", help="new display name")
    p.add_argument("--login", dest="new_login", metavar="NEW_LOGIN", help="new login")
    p.add_argument("--language", help="new language: ja or en")
    p.add_argument("--role", help="new role: admin, manager or worker")
    zone = p.add_mutually_exclusive_group()
    zone.add_argument("--time-zone", help="new IANA time zone")
    zone.add_argument("--tenant-time-zone", action="store_true", help="use the tenant's time zone again")
    flag = p.add_mutually_exclusive_group()
    flag.add_argument("--enable", dest="enabled", action="store_const", const=True, help="enable the user")
    flag.add_argument("--disable", dest="enabled", action="store_const", const=False, help="disable the user")
    p.set_defaults(func=cmd_user, enabled=None)
