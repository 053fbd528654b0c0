"""`telework admin tenant | user | agent` through the real CLI on SQLite and PostgreSQL: exact outputs,
exact audit entries, time zones and control characters refused at every entry point, unknown tenants."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage import directory
from storage.account_changes import face_erase_at
from storage.models import Tenant
from tests.admin_world import WHO, admin, entries, last_seq, ok, run, stamp

__all__ = ["admin"]  # the fixture


def created(engine: Engine, tenant: str) -> datetime:
    (summary,) = directory.tenants(engine, tenant)
    return summary.created_at


# ----------------------------------------------------------------- tenants


def test_tenant_create_list_show_update_terminate_reinstate(
    admin: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each tenant command prints exactly what it did and writes one audit entry, old -> new and source."""
    assert ok(["admin", "tenant", "create", "acme", "--name", "Acme", "--time-zone", "UTC"], capsys) == (
        "tenant acme created\n"
    )
    assert (
        ok(["admin", "tenant", "create", "beta", "--name", "ベータ商事"], capsys) == "tenant beta created\n"
    )
    ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], capsys)
    ok(["admin", "agent", "create", "--tenant", "acme", "pc-1", "--user", "aiko"], capsys)
    assert run(["admin", "task", "create", "--tenant", "acme", "Design"], capsys)[0] == 0  # warns: no Redis
    acme, beta = stamp(created(admin, "acme")), stamp(created(admin, "beta"))
    assert ok(["admin", "tenant", "list"], capsys) == (
        "ID    NAME        TIME ZONE   USERS  AGENTS  CREATED                    TERMINATED\n"
        f"acme  Acme        UTC         1      1       {acme}  -\n"
        f"beta  ベータ商事  Asia/Tokyo  0      0       {beta}  -\n"
    )
    before = last_seq(admin)
    assert ok(
        ["admin", "tenant", "update", "acme", "--name", "Acme Corp", "--time-zone", "Asia/Tokyo"], capsys
    ) == ("tenant acme changed:\n  name: Acme -> Acme Corp\n  time_zone: UTC -> Asia/Tokyo\n")
    assert ok(["admin", "tenant", "update", "acme", "--name", "Acme Corp"], capsys) == (
        "tenant acme unchanged: it already has these values\n"
    )
    assert run(["admin", "tenant", "terminate", "acme"], capsys) == (
        2,
        "",
        "telework admin: error: terminating tenant acme refuses its agents and erases its face data in "
        "30 days; add --yes to confirm\n",
    )
    out = ok(["admin", "tenant", "terminate", "acme", "--yes"], capsys)
    with Session(admin) as s:
        tenant = s.get(Tenant, "acme")
        assert tenant is not None and tenant.terminated_at is not None
        ended = tenant.terminated_at.replace(tzinfo=tenant.terminated_at.tzinfo or UTC)
    erase = stamp(face_erase_at(ended, 30))
    assert out == (
        f"tenant acme terminated at {stamp(ended)}; its agents are refused; its face data is erased from "
        f"{erase} (reinstate it before then to keep it)\n"
    )
    assert ok(["admin", "tenant", "show", "acme"], capsys) == (
        "id                     acme\n"
        "name                   Acme Corp\n"
        "time zone              Asia/Tokyo\n"
        f"created                {acme}\n"
        f"terminated             {stamp(ended)}\n"
        f"face data erased from  {erase}\n"
        "users                  1\n"
        "agents                 1 active, 0 revoked\n"
        "tasks offered          1\n"
    )
    refused = (
        f"telework admin: error: tenant 'acme' is terminated (since {stamp(ended)}); reinstate it first\n"
    )
    for argv in (
        ["user", "create", "--tenant", "acme", "ben", "--name", "Ben"],
        ["agent", "create", "--tenant", "acme", "pc-2"],
        ["agent", "reissue", "pc-1"],
    ):
        assert run(["admin", *argv], capsys) == (2, "", refused)
    assert ok(["admin", "tenant", "reinstate", "acme"], capsys) == (
        "tenant acme reinstated; its agents are let in again\n"
    )
    assert run(["admin", "tenant", "reinstate", "acme"], capsys)[::2] == (
        2,
        "telework admin: error: tenant 'acme' is not terminated\n",
    )
    assert entries(admin, before) == [
        (
            "tenant.update",
            "tenant:acme",
            "acme",
            WHO,
            {
                "source": WHO,
                "changes": {"name": ["Acme", "Acme Corp"], "time_zone": ["UTC", "Asia/Tokyo"]},
            },
        ),
        (
            "tenant.terminate",
            "tenant:acme",
            "acme",
            WHO,
            {"source": WHO, "changes": {"terminated_at": [None, ended.isoformat()]}},
        ),
        (
            "tenant.reinstate",
            "tenant:acme",
            "acme",
            WHO,
            {"source": WHO, "changes": {"terminated_at": [ended.isoformat(), None]}},
        ),
    ]


def test_reinstate_is_refused_once_the_face_data_is_due(
    admin: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tenant terminated 30 days ago (its face-erase clock run out) is not reinstated; nothing audited."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    with Session(admin) as s:
        s.execute(update(Tenant).where(col(Tenant.id) == "acme").values(terminated_at=ended))
        s.commit()
    before = last_seq(admin)
    assert run(["admin", "tenant", "reinstate", "acme"], capsys)[::2] == (
        2,
        f"telework admin: error: tenant 'acme' was terminated on {stamp(ended)} and its face data was due "
        f"for erasure on {stamp(ended + timedelta(days=30))} (TELEWORK_TERMINATED_ERASE_DAYS=30); it "
        "cannot be reinstated: create a new tenant\n",
    )
    assert entries(admin, before) == []


# ------------------------------------------------------------------- users


def test_user_update_corrects_a_persons_data_audited_without_their_name(
    admin: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """user update changes every field given, prints old -> new, and audits old -> new except the name and
    login, which the entry only names; list shows the result."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    assert ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko Sato"], capsys) == (
        "user aiko created in tenant acme (id 1)\n"
    )
    before = last_seq(admin)
    argv = [
        "admin",
        "user",
        "update",
        "--tenant",
        "acme",
        "aiko",
        "--name",
        "Aiko Suzuki",
        "--login",
        "asuzuki",
    ]
    argv += ["--language", "en", "--time-zone", "Europe/Paris", "--role", "manager", "--disable"]
    assert ok(argv, capsys) == (
        "user aiko of tenant acme changed:\n"
        "  name: Aiko Sato -> Aiko Suzuki\n"
        "  login: aiko -> asuzuki\n"
        "  language: ja -> en\n"
        "  role: worker -> manager\n"
        "  time_zone: None -> Europe/Paris\n"
        "  enabled: True -> False\n"
    )
    assert ok(
        ["admin", "user", "update", "--tenant", "acme", "asuzuki", "--tenant-time-zone", "--enable"], capsys
    ) == (
        "user asuzuki of tenant acme changed:\n  time_zone: Europe/Paris -> None\n  enabled: False -> True\n"
    )
    assert run(["admin", "user", "update", "--tenant", "acme", "asuzuki"], capsys)[::2] == (
        2,
        "telework admin: error: expected at least one of --name, --login, --language, --time-zone, "
        "--tenant-time-zone, --role, --enable, --disable; got none\n",
    )
    assert run(["admin", "user", "update", "--tenant", "acme", "aiko", "--name", "A"], capsys)[::2] == (
        2,
        "telework admin: error: user 'aiko' does not exist in tenant 'acme'\n",
    )
    assert run(["admin", "user", "update", "--tenant", "acme", "asuzuki", "--role", "boss"], capsys)[::2] == (
        2,
        "telework admin: error: role: expected one of admin, manager, worker, got 'boss'\n",
    )
    assert entries(admin, before) == [
        (
            "user.update",
            "user:1",
            "acme",
            WHO,
            {
                "source": WHO,
                "changes": {
                    "enabled": [True, False],
                    "language": ["ja", "en"],
                    "role": ["worker", "manager"],
                    "time_zone": [None, "Europe/Paris"],
                },
                "withheld": ["login", "name"],
            },
        ),
        (
            "user.update",
            "user:1",
            "acme",
            WHO,
            {"source": WHO, "changes": {"enabled": [False, True], "time_zone": ["Europe/Paris", None]}},
        ),
    ]
    audit_text = json.dumps(entries(admin), ensure_ascii=False)
    for personal in ("aiko", "Aiko", "asuzuki", "Suzuki"):
        assert personal not in audit_text
    (user,) = directory.users(admin, "acme")
    assert ok(["admin", "user", "list", "--tenant", "acme"], capsys) == (
        "ID  LOGIN    NAME         ROLE     LANGUAGE  TIME ZONE   ENABLED  CREATED\n"
        f"1   asuzuki  Aiko Suzuki  manager  en        (tenant's)  yes      {stamp(user.created_at)}\n"
    )


def test_a_login_taken_in_the_tenant_is_refused(admin: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """Renaming a login to one the tenant already has is one line, exit 2, and changes nothing."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], capsys)
    ok(["admin", "user", "create", "--tenant", "acme", "ben", "--name", "Ben"], capsys)
    before = last_seq(admin)
    assert run(["admin", "user", "update", "--tenant", "acme", "ben", "--login", "aiko"], capsys)[::2] == (
        2,
        "telework admin: error: user 'aiko' already exists in tenant 'acme'\n",
    )
    assert entries(admin, before) == []
    assert [u.login for u in directory.users(admin, "acme")] == ["aiko", "ben"]


# -------------------------------------------------------- validation


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "tenant", "create", "mars", "--name", "Mars", "--time-zone", "Mars/Olympus"],
        ["admin", "tenant", "update", "acme", "--time-zone", "Mars/Olympus"],
        [
            "admin",
            "user",
            "create",
            "--tenant",
            "acme",
            "ares",
            "--name",
            "Ares",
            "--time-zone",
            "Mars/Olympus",
        ],
        ["admin", "user", "update", "--tenant", "acme", "aiko", "--time-zone", "Mars/Olympus"],
    ],
    ids=["tenant create", "tenant update", "user create", "user update"],
)
def test_an_unknown_time_zone_is_refused_at_every_entry_point(
    admin: Engine, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Mars/Olympus is not in the IANA database: one line naming the value, exit 2, nothing written."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], capsys)
    before = last_seq(admin)
    assert run(argv, capsys) == (
        2,
        "",
        "telework admin: error: time zone: expected an IANA time zone name such as Asia/Tokyo or UTC, "
        "got 'Mars/Olympus'\n",
    )
    assert entries(admin, before) == []
    assert [t.time_zone for t in directory.tenants(admin)] == ["Asia/Tokyo"]
    assert [u.time_zone for u in directory.users(admin, "acme")] == [None]


CTRL = "expected no control characters, got"
SLUG = "expected lowercase letters, digits, '-' or '_' (1-63 chars), got"
USER = ["user", "create", "--tenant", "acme"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["tenant", "create", "acme", "--name", "Ac\x00me"], f"name: {CTRL} U+0000 in 'Ac\\x00me'"),
        (["tenant", "create", "ac\x00me", "--name", "Acme"], f"tenant: {SLUG} 'ac\\x00me'"),
        (["tenant", "update", "acme", "--name", "A\u202ecme"], f"name: {CTRL} U+202E in 'A\\u202ecme'"),
        ([*USER, "bo\nb", "--name", "Bob"], f"login: {CTRL} U+000A in 'bo\\nb'"),
        ([*USER, "bob", "--name", "Bob\x1b[2J"], f"name: {CTRL} U+001B in 'Bob\\x1b[2J'"),
        ([*USER, "b o b", "--name", "Bob"], "login: expected no spaces, got 'b o b'"),
        ([*USER, "bob", "--name", "   "], "name: expected 1-200 characters, got 0"),
        ([*USER, "x" * 121, "--name", "X"], "login: expected 1-120 characters, got 121"),
        (
            ["user", "update", "--tenant", "acme", "aiko", "--login", "ai\tko"],
            f"login: {CTRL} U+0009 in 'ai\\tko'",
        ),
        (["agent", "create", "--tenant", "acme", "pc\x00"], f"agent: {SLUG} 'pc\\x00'"),
        (["task", "create", "--tenant", "acme", "De\x07sign"], f"task name: {CTRL} U+0007 in 'De\\x07sign'"),
    ],
    ids=[
        "tenant name",
        "tenant id",
        "tenant rename",
        "login",
        "user name",
        "login space",
        "blank name",
        "long login",
        "login rename",
        "agent id",
        "task name",
    ],
)
def test_control_characters_are_refused_at_creation_and_update(
    admin: Engine, argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """NUL, newline, escape, bidi override, blanks and over-long values: one line naming the value, exit 2."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ok(["admin", "user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], capsys)
    before = last_seq(admin)
    assert run(["admin", *argv], capsys) == (2, "", f"telework admin: error: {error}\n")
    assert entries(admin, before) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "tenant", "show", "nosuch"],
        ["admin", "user", "list", "--tenant", "nosuch"],
        ["admin", "agent", "list", "--tenant", "nosuch"],
        ["admin", "task", "list", "--tenant", "nosuch"],
        ["admin", "settings", "show", "--tenant", "nosuch"],
        ["admin", "settings", "history", "--tenant", "nosuch"],
    ],
    ids=lambda a: " ".join(a[1:3]),
)
def test_every_list_command_errors_on_an_unknown_tenant(
    admin: Engine, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A tenant that does not exist is one line and exit 2, never an empty list."""
    assert run(argv, capsys) == (2, "", "telework admin: error: tenant 'nosuch' does not exist\n")


def test_a_user_of_another_tenant_is_out_of_reach(admin: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """Naming another tenant's user through this tenant finds nobody: update, settings and agents alike."""
    ok(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    ok(["admin", "tenant", "create", "other", "--name", "Other"], capsys)
    ok(["admin", "user", "create", "--tenant", "other", "olga", "--name", "Olga"], capsys)
    before = last_seq(admin)
    missing = "telework admin: error: user 'olga' does not exist in tenant 'acme'\n"
    for argv in (
        ["user", "update", "--tenant", "acme", "olga", "--disable"],
        ["agent", "create", "--tenant", "acme", "pc-9", "--user", "olga"],
        ["settings", "set", "--tenant", "acme", "--user", "olga", "--away-after", "60"],
    ):
        assert run(["admin", *argv], capsys) == (2, "", missing), argv
    assert entries(admin, before) == []
    assert [u.enabled for u in directory.users(admin, "other")] == [True]
