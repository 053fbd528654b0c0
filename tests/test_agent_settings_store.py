"""Agent settings in the database (SQLite, PostgreSQL) and `telework admin settings set | show | history`."""

from __future__ import annotations

import asyncio
import getpass
import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from realtime import keys
from realtime.protocol import AgentSettings
from realtime.protocol.agent_settings import Change, GroupLayer, SettingsError, SettingsLayers, resolve
from realtime.tenant_settings import decode_layers, load_settings
from storage.accounts import create_tenant, create_user
from storage.agent_settings_models import UserAgentSettings
from storage.agent_settings_store import change_settings, effective_for, history, load_layers
from storage.audit_models import AuditEntry
from storage.models import Group, Membership, utcnow
from telework.cli import main
from tests.admin_world import audit_as_admin

ACTOR = f"cli:{getpass.getuser()}"


def world(engine: Engine) -> dict[str, int]:
    """Tenant acme: users bob (groups sales and audit) and eve (no group), and the ids."""
    create_tenant(engine, "acme", "Acme")
    bob = create_user(engine, "acme", "bob", "Bob")
    eve = create_user(engine, "acme", "eve", "Eve")
    with Session(engine) as s:
        sales = Group(tenant_id="acme", name="sales", created_at=utcnow())
        audit = Group(tenant_id="acme", name="audit", created_at=utcnow())
        s.add_all([sales, audit])
        s.flush()
        assert sales.id is not None and audit.id is not None
        for group in (sales.id, audit.id):
            s.add(Membership(group_id=group, user_id=bob, tenant_id="acme", created_at=utcnow()))
        s.commit()
        return {"bob": bob, "eve": eve, "sales": sales.id, "audit": audit.id}


@pytest.fixture
def cli_env(engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI on the test database, without Redis (no TELEWORK_REDIS_URL, no running `up`); the test's
    engine audits as the CLI does."""
    for key in list(os.environ):
        if key.startswith("TELEWORK_") and not key.startswith("TELEWORK_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TELEWORK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    audit_as_admin(engine, tmp_path)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------- the store


def test_changes_round_trip_with_history_and_audit(engine: Engine) -> None:
    """Tenant, group and user changes are stored as overrides, read back as layers that resolve bob's
    settings; each changed field is one history row (old -> new, actor), each change one audit entry."""
    ids = world(engine)
    change_settings(engine, "acme", {"threshold_level": 4, "away_after_s": 60}, actor="ops")
    change_settings(engine, "acme", {"away_after_s": 120}, group="sales", actor="ops")
    target, done = change_settings(engine, "acme", {"away_after_s": 90}, login="bob", actor="ops")
    assert (target.level, target.user_id, target.label) == ("user", ids["bob"], "user bob of tenant acme")
    assert done == [Change("away_after_s", None, 90.0)]

    layers = load_layers(engine, "acme")
    assert layers == SettingsLayers(
        tenant={"threshold_level": 4, "away_after_s": 60.0},
        groups={ids["sales"]: GroupLayer(name="sales", overrides={"away_after_s": 120.0})},
        users={ids["bob"]: {"away_after_s": 90.0}},
        members={ids["bob"]: [ids["sales"]]},  # audit has no overrides: not needed
    )
    assert resolve(layers, ids["bob"]).settings == AgentSettings(threshold_level=4, away_after_s=90.0)
    assert resolve(layers, ids["eve"]).settings == AgentSettings(threshold_level=4, away_after_s=60.0)

    _, undone = change_settings(engine, "acme", {}, ["away_after_s"], login="bob", actor="ops")
    assert undone == [Change("away_after_s", 90.0, None)]
    with Session(engine) as s:
        assert s.get(UserAgentSettings, ids["bob"]) is None  # nothing left at bob's level: no row
        actions = list(
            s.execute(
                select(col(AuditEntry.action), col(AuditEntry.target), col(AuditEntry.detail))
                .where(col(AuditEntry.action) == "settings.set")
                .order_by(col(AuditEntry.seq))
            ).all()
        )
    assert [(e.level, e.target, e.field, e.old, e.new, e.actor) for e in history(engine, "acme")] == [
        ("tenant", "", "threshold_level", None, 4, "ops"),
        ("tenant", "", "away_after_s", None, 60.0, "ops"),
        ("group", "sales", "away_after_s", None, 120.0, "ops"),
        ("user", "bob", "away_after_s", None, 90.0, "ops"),
        ("user", "bob", "away_after_s", 90.0, None, "ops"),
    ]
    assert [tuple(a) for a in actions] == [
        (
            "settings.set",
            "tenant:acme",
            {
                "source": "ops",
                "changes": {"away_after_s": [None, 60.0], "threshold_level": [None, 4]},
                "level": "tenant",
            },
        ),
        (
            "settings.set",
            f"group:{ids['sales']}",
            {"source": "ops", "changes": {"away_after_s": [None, 120.0]}, "level": "group"},
        ),
        (
            "settings.set",
            f"user:{ids['bob']}",
            {"source": "ops", "changes": {"away_after_s": [None, 90.0]}, "level": "user"},
        ),
        (
            "settings.set",
            f"user:{ids['bob']}",
            {"source": "ops", "changes": {"away_after_s": [90.0, None]}, "level": "user"},
        ),
    ]
    assert [e.field for e in history(engine, "acme", limit=2)] == ["away_after_s", "away_after_s"]


def test_same_value_again_is_no_change_and_writes_nothing(engine: Engine) -> None:
    """Setting a value a level already has returns no change and records no history."""
    world(engine)
    change_settings(engine, "acme", {"threshold_level": 4}, actor="ops")
    assert change_settings(engine, "acme", {"threshold_level": 4}, actor="ops")[1] == []
    assert len(history(engine, "acme")) == 1


def test_unknown_tenant_group_user_and_bad_value_write_nothing(engine: Engine) -> None:
    """Each unknown name and an out-of-range value is a SettingsError saying what; nothing is stored."""
    world(engine)
    cases = [
        ({"tenant": "nope"}, {"threshold_level": 4}, "tenant 'nope' does not exist"),
        (
            {"tenant": "acme", "group": "hr"},
            {"threshold_level": 4},
            "group 'hr' does not exist in tenant 'acme'",
        ),
        (
            {"tenant": "acme", "login": "zed"},
            {"threshold_level": 4},
            "user 'zed' does not exist in tenant 'acme'",
        ),
        (
            {"tenant": "acme"},
            {"threshold_level": 9},
            "threshold_level: expected an integer from 1 to 5, got 9",
        ),
    ]
    for where, values, message in cases:
        with pytest.raises(SettingsError) as err:
            change_settings(engine, changes=values, actor="ops", **where)
        assert str(err.value) == message
    assert history(engine, "acme") == []
    assert load_layers(engine, "acme") == SettingsLayers()


def test_stored_value_out_of_bounds_is_left_out(engine: Engine) -> None:
    """A stored override that no longer fits the model (edited by hand, bounds tightened) is dropped on
    read, the others kept."""
    world(engine)
    change_settings(engine, "acme", {"threshold_level": 4}, login="eve", actor="ops")
    with Session(engine) as s:
        row = s.execute(select(UserAgentSettings)).scalar_one()
        row.overrides = {"threshold_level": 4, "other_face_min_ratio": 2.0}
        s.add(row)
        s.commit()
        eve = row.user_id
    assert load_layers(engine, "acme").users == {eve: {"threshold_level": 4}}


# ---------------------------------------------------------------- the commands


@pytest.mark.usefixtures("cli_env")
def test_set_without_redis_stores_and_warns(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """Without Redis `settings set --group` still stores the change (with the OS user as actor), prints it,
    and warns that live agents get it at their next connection."""
    world(engine)
    code, out, err = run(
        ["admin", "settings", "set", "--tenant", "acme", "--group", "sales", "--away-after", "120"], capsys
    )
    assert (code, out) == (
        0,
        "agent settings of group sales of tenant acme changed:\n  away_after_s: unset -> 120\n",
    )
    assert err.startswith(
        "telework admin: warning: open agent sessions were not told (TELEWORK_REDIS_URL: not set"
    )
    assert err.endswith("; they get the new settings at their next connection\n")
    assert err.count("\n") == 1
    assert [(e.level, e.target, e.new, e.actor) for e in history(engine, "acme")] == [
        ("group", "sales", 120.0, ACTOR)
    ]


@pytest.mark.usefixtures("cli_env")
def test_show_prints_effective_values_and_their_sources(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """`settings show --user bob` prints every field's effective value and where it comes from."""
    world(engine)
    change_settings(engine, "acme", {"threshold_level": 4, "away_after_s": 60}, actor="ops")
    change_settings(
        engine, "acme", {"away_after_s": 120, "incident_action": "lock"}, group="sales", actor="ops"
    )
    change_settings(engine, "acme", {"threshold_level": 5}, login="bob", actor="ops")
    assert run(["admin", "settings", "show", "--tenant", "acme", "--user", "bob"], capsys) == (
        0,
        "effective agent settings of user bob of tenant acme:\n"
        "  heartbeat_interval_s  5     default\n"
        "  threshold_level       5     user\n"
        "  analysis_fps          2     default\n"
        "  away_after_s          120   group sales\n"
        "  incident_after_s      3     default\n"
        "  evidence_interval_s   600   default\n"
        "  incident_action       lock  group sales\n"
        "  peeking_after_s       1     default\n"
        "  camera_after_s        2     default\n"
        "  other_face_min_ratio  0.5   default\n",
        "",
    )
    code, out, _ = run(["admin", "settings", "show", "--tenant", "acme"], capsys)
    assert (code, out.splitlines()[0], out.splitlines()[4]) == (
        0,
        "effective agent settings of tenant acme:",
        "  away_after_s          60   tenant",
    )
    assert run(["admin", "settings", "show", "--tenant", "acme", "--user", "zed"], capsys) == (
        2,
        "",
        "telework admin: error: user 'zed' does not exist in tenant 'acme'\n",
    )


@pytest.mark.usefixtures("cli_env")
def test_history_lists_changes_oldest_first(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """`settings history` prints one line per changed field: when, who, where, field, old -> new."""
    world(engine)
    assert run(["admin", "settings", "history", "--tenant", "acme"], capsys) == (
        0,
        "no agent settings changes recorded for tenant acme\n",
        "",
    )
    change_settings(engine, "acme", {"threshold_level": 4}, actor="ops")
    change_settings(engine, "acme", {"threshold_level": 5}, login="bob", actor="ops")
    change_settings(engine, "acme", {}, ["threshold_level"], actor="ops")
    code, out, _ = run(["admin", "settings", "history", "--tenant", "acme"], capsys)
    stamps = [e.changed_at.isoformat(timespec="seconds") for e in history(engine, "acme")]
    assert all(stamp.endswith("+00:00") for stamp in stamps)
    assert (code, out) == (
        0,
        f"{stamps[0]} ops tenant threshold_level: unset -> 4\n"
        f"{stamps[1]} ops user bob threshold_level: unset -> 5\n"
        f"{stamps[2]} ops tenant threshold_level: 4 -> unset\n",
    )
    assert run(["admin", "settings", "history", "--tenant", "nope"], capsys)[::2] == (
        2,
        "telework admin: error: tenant 'nope' does not exist\n",
    )


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        (
            "--heartbeat-interval",
            "0.001",
            "heartbeat_interval_s: expected a number from 1 to 300, got '0.001'",
        ),
        ("--other-face-min-ratio", "2.0", "other_face_min_ratio: expected a number from 0.1 to 1, got '2.0'"),
        ("--away-after", "inf", "away_after_s: expected a number from 1 to 3600, got 'inf'"),
        ("--away-after", "nan", "away_after_s: expected a number from 1 to 3600, got 'nan'"),
    ],
    ids=["0.001", "2.0", "inf", "nan"],
)
def test_out_of_range_flags_are_one_line_errors(
    engine: Engine, capsys: pytest.CaptureFixture[str], flag: str, value: str, why: str
) -> None:
    """A value outside the model's bounds: exit 2, one line naming flag, field and range; nothing stored."""
    world(engine)
    assert run(["admin", "settings", "set", "--tenant", "acme", flag, value], capsys) == (
        2,
        "",
        f"telework admin settings set: error: argument {flag}: {why} "
        "(see telework admin settings set --help)\n",
    )
    assert history(engine, "acme") == []


def test_set_with_redis_refreshes_the_cache(
    database_url: str,
    engine: Engine,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With Redis, `settings set --user` stores the change and puts the tenant's new layers in the cache,
    with no warning; `effective_for` answers from the database alone."""
    ids = world(audit_as_admin(engine, tmp_path))
    monkeypatch.setenv("TELEWORK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    monkeypatch.setenv("TELEWORK_REDIS_URL", redis_url)
    capsys.readouterr()  # the master key's creation, logged
    code, out, err = run(
        ["admin", "settings", "set", "--tenant", "acme", "--user", "bob", "--threshold-level", "5"], capsys
    )
    assert (code, out, err) == (
        0,
        "agent settings of user bob of tenant acme changed:\n  threshold_level: unset -> 5\n",
        "",
    )

    async def cached() -> SettingsLayers | None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await load_settings(client, "acme") == AgentSettings()  # tenant level: untouched
            return decode_layers("acme", await client.get(keys.settings_key("acme")))
        finally:
            await client.aclose()

    assert asyncio.run(cached()) == SettingsLayers(users={ids["bob"]: {"threshold_level": 5}})
    target, effective = effective_for(engine, "acme", "bob")
    assert (target.user_id, effective.settings, effective.sources["threshold_level"]) == (
        ids["bob"],
        AgentSettings(threshold_level=5),
        "user",
    )
