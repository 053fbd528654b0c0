"""Alembic migrations on SQLite and PostgreSQL: from empty, down and up, and the start-up check."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from core.settings import ServerSettings
from storage import hash_chain_store
from storage.db import (
    SchemaError,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    import_tables,
    upgrade,
)
from storage.evidence_store import open_store
from storage.hash_chain import GENESIS, link_hash
from storage.keyring import ensure_master_key
from telework.cli import main

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

HEAD = "0011"
TABLES = {
    "group_schedule",
    "holiday_calendar",
    "tenant_holiday",
    "agent_device",
    "agent_settings_change",
    "alembic_version",
    "audit_log",
    "daily_rollup",
    "data_key",
    "event",
    "evidence_object",
    "face_template",
    "group_agent_settings",
    "incident",
    "interval",
    "membership",
    "rollup_dirty",
    "schedule",
    "task",
    "task_rollup",
    "tenant",
    "tenant_agent_settings",
    "tenant_policy",
    "tw_group",
    "tw_user",
    "user_agent_settings",
    "user_legal_hold",
    "web_api_token",
    "web_credential",
    "web_recovery_code",
    "web_second_factor",
    "web_setup_code",
}


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def test_migrated_database_matches_the_models(engine: Engine) -> None:
    """After upgrade: the newest revision (HEAD), every table, no difference from the models, check passes."""
    assert head_revision() == HEAD
    assert current_revision(engine) == HEAD
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), import_tables()) == []
    check_schema(engine)


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    """Down to base leaves no table (and the exact 'no schema' error); up again restores head."""
    assert downgrade(engine, "base") == "base"
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    with pytest.raises(SchemaError) as err:
        check_schema(engine)
    assert str(err.value) == f"database {_url(engine)} has no schema; run `telework db upgrade` first"
    assert upgrade(engine) == HEAD
    assert set(inspect(engine).get_table_names()) == TABLES
    check_schema(engine)


def test_database_behind_head_names_both_revisions(engine: Engine) -> None:
    """A database at 0001 stops start-up with both revisions and the command to run."""
    assert downgrade(engine, "0001") == "0001"
    with pytest.raises(SchemaError) as err:
        check_schema(engine)
    assert str(err.value) == (
        f"database {_url(engine)} is at revision 0001, this code needs {HEAD}; run `telework db upgrade`"
    )


def test_create_all_era_database_is_stamped_and_upgraded_keeping_rows(engine: Engine) -> None:
    """A pre-migration database (schema_version, no alembic_version) is named, then upgraded with its rows."""
    downgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO schema_version (id, version, applied_at) VALUES (1, 1, '2026-11-01')"))
        conn.execute(
            text(
                "INSERT INTO tenant (id, name, time_zone, created_at) "
                "VALUES ('acme', 'Acme', 'UTC', '2026-11-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tw_user (tenant_id, login, name, role, enabled, created_at) "
                "VALUES ('acme', 'bob', 'Bob', 'worker', true, '2026-11-01')"
            )
        )
    with pytest.raises(SchemaError) as err:
        check_schema(engine)
    assert str(err.value) == (
        f"database {_url(engine)} has the schema of an older release, this code needs revision {HEAD}; "
        "run `telework db upgrade`"
    )
    assert upgrade(engine) == HEAD
    check_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT login, language, time_zone FROM tw_user")).all()
    assert [tuple(r) for r in rows] == [("bob", "ja", None)]
    assert "schema_version" not in inspect(engine).get_table_names()


def test_cli_db_upgrade_applies_the_migrations(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`telework db upgrade` on a database at 0001 brings it to head and says so."""
    downgrade(engine, "0001")
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == f"database schema at revision {HEAD}\n"
    assert current_revision(engine) == HEAD


def test_the_versions_package_lists_every_revision() -> None:
    """storage/migrations/versions/__init__.py names each revision file, so a reader sees the history."""
    from pathlib import Path

    import storage.migrations.versions as versions

    folder = Path(versions.__file__).parent
    revisions = sorted(p.name.split("_", 1)[0] for p in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))
    doc = versions.__doc__ or ""
    assert [r for r in revisions if f"{r} " not in doc] == []
    assert len(revisions) >= 3


def test_event_key_per_tenant_migration_keeps_rows(engine: Engine) -> None:
    """0004 -> 0005 keeps the events; then (tenant, id) is the key and seq holds 2**63 - 1."""
    downgrade(engine, "0004")
    insert = text(
        "INSERT INTO event (id, tenant_id, agent_id, seq, ts, type, payload, session_id, "
        "received_at, stored_at) VALUES (:id, :tenant, 'pc-1', :seq, '2026-11-02 00:00:00', "
        "'state', '{}', 's', '2026-11-02 00:00:00', '2026-11-02 00:00:00')"
    )
    event_id = "0190f5f0-0000-7000-8000-000000000001"
    with engine.begin() as conn:
        conn.execute(insert, {"id": event_id, "tenant": "acme", "seq": 7})
    assert inspect(engine).get_pk_constraint("event")["constrained_columns"] == ["id"]
    assert upgrade(engine, "0005") == "0005"
    key = inspect(engine).get_pk_constraint("event")
    assert (key["name"], key["constrained_columns"]) == ("pk_event", ["tenant_id", "id"])
    with engine.begin() as conn:
        conn.execute(insert, {"id": event_id, "tenant": "globex", "seq": 2**63 - 1})
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, id, seq FROM event ORDER BY tenant_id")).all()
    assert [tuple(r) for r in rows] == [("acme", event_id, 7), ("globex", event_id, 2**63 - 1)]


def test_chain_of_an_older_version_keeps_verifying(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Entries written at 0005 (plain hashes) verify after 0006; authenticated ones continue that chain."""
    downgrade(engine, "0005")
    insert = text(
        "INSERT INTO audit_log (tenant_id, actor, action, target, detail, at, prev_hash, hash) "
        "VALUES (NULL, 'admin', 'tenant.create', :target, '{}', :at, :prev, :pending) RETURNING seq"
    )
    prev = GENESIS
    with engine.begin() as conn:
        for n in (1, 2):
            target = f"tenant:t{n}"
            seq = conn.execute(
                insert, {"target": target, "at": T0, "prev": prev, "pending": f"p{n}"}
            ).scalar_one()
            fields: dict[str, object] = {"seq": seq, "tenant_id": None, "actor": "admin"}
            fields |= {"action": "tenant.create", "target": target, "detail": {}, "at": T0}
            prev = link_hash(prev, fields)
            conn.execute(text("UPDATE audit_log SET hash = :h WHERE seq = :seq"), {"h": prev, "seq": seq})
    assert upgrade(engine) == HEAD
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    ensure_master_key(tmp_path)
    store = open_store(ServerSettings(data_dir=tmp_path), engine)
    summary = (
        f"audit log: 2 entries, head 2:{prev}, witness none; evidence: 0 object(s) checked; 0 problem(s)\n"
    )
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == summary
    hash_chain_store.record(engine, actor="admin", action="tenant.create", target="tenant:t3", at=T0)
    report = hash_chain_store.verify(engine, store)
    assert (report.entries, report.witness, report.problems) == (3, "entry 3", [])
    with engine.connect() as conn:
        macs = conn.execute(text("SELECT seq, mac IS NULL FROM audit_log ORDER BY seq")).all()
    assert [tuple(m) for m in macs] == [(1, True), (2, True), (3, False)]
