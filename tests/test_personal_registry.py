"""The registry of personal data: every table, column, blob and Redis key about a person is declared."""

from __future__ import annotations

import inspect

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.engine import Engine

from realtime import keys
from storage.db import import_tables
from storage.personal_data import PersonalDataError
from storage.personal_erase import Manifest
from storage.personal_registry import (
    BLOBS,
    HOLDINGS,
    NOT_PERSONAL,
    REDIS,
    REDIS_NOT_PERSONAL,
    problems,
    user_columns,
)


def _schema(engine: Engine) -> list[Table]:
    """The tables a migrated database really has (read from it, foreign keys included)."""
    reflected = MetaData()
    reflected.reflect(engine)
    return list(reflected.tables.values())


def test_every_table_of_the_migrated_schema_is_declared(engine: Engine) -> None:
    """The schema the migrations make (SQLite and PostgreSQL) has no table or user column undeclared."""
    tables = _schema(engine)
    assert problems(tables) == []
    declared = {h.table for h in HOLDINGS} | {n.table for n in NOT_PERSONAL}
    assert {t.name for t in tables} == declared


def test_the_models_are_declared_too() -> None:
    """Every SQLModel table (what the code writes) passes the same check."""
    assert problems(import_tables().sorted_tables) == []


def _copy_of_schema() -> MetaData:
    copy = MetaData()
    for t in import_tables().sorted_tables:
        t.to_metadata(copy)
    return copy


def test_a_new_table_with_a_user_column_fails_the_check() -> None:
    """A table keyed to a user, one keyed to an agent, one with a login column: each one is named."""
    meta = _copy_of_schema()
    Table("badge", meta, Column("id", Integer, primary_key=True), Column("owner", ForeignKey("tw_user.id")))
    Table("note", meta, Column("id", Integer, primary_key=True), Column("agent_id", String(63)))
    Table("seen", meta, Column("id", Integer, primary_key=True), Column("by_login", String(63)))
    Table("colour", meta, Column("id", Integer, primary_key=True), Column("hex", String(6)))
    assert problems(meta.sorted_tables) == [
        "table badge: not declared in storage/personal_registry.py (user column(s) owner)",
        "table colour: not declared in storage/personal_registry.py (no user column)",
        "table note: not declared in storage/personal_registry.py (user column(s) agent_id)",
        "table seen: not declared in storage/personal_registry.py (user column(s) by_login)",
    ]


def test_a_new_user_column_in_a_declared_table_fails_the_check() -> None:
    """A personal table given a second user column, and a table declared impersonal given one."""
    meta = _copy_of_schema()
    meta.tables["schedule"].append_column(Column("approver_id", ForeignKey("tw_user.id")))
    meta.tables["task"].append_column(Column("owner_user_id", Integer))
    assert problems(meta.sorted_tables) == [
        "table schedule: user column(s) approver_id not handled by a holding",
        "table task: declared not personal, but has user column(s) owner_user_id",
    ]


def test_user_columns_rule() -> None:
    """Names, foreign keys to users, agents and other personal tables; a user's name and login."""
    tables = import_tables().tables
    personal = {h.table for h in HOLDINGS}
    assert user_columns(tables["tw_user"], personal) == ["id", "login", "name"]
    assert user_columns(tables["incident"], personal) == ["agent_id", "user_id", "reviewer_id"]
    assert user_columns(tables["evidence_object"], personal) == ["agent_id", "user_id", "incident_id"]
    assert user_columns(tables["tw_group"], personal) == []


def test_holdings_are_unique_and_erased_children_first() -> None:
    """One name per holding; a table another deleted table references is deleted after it."""
    names = [h.name for h in HOLDINGS]
    assert len(names) == len(set(names))
    order = {h.table: i for i, h in enumerate(HOLDINGS) if h.action == "delete"}
    tables = import_tables().tables
    for child, position in order.items():
        for fk in tables[child].foreign_keys:
            parent = fk.column.table.name
            if parent in order and parent != child:
                assert order[parent] > position, f"{child} must be erased before {parent}"
    assert HOLDINGS[-1].table == "tw_user"
    assert {b.holding for b in BLOBS} <= set(names)


def test_every_redis_key_of_a_tenant_is_declared() -> None:
    """Each key function of realtime.keys (and each constant key) is personal or said not to be."""
    functions = {
        name
        for name, f in inspect.getmembers(keys, inspect.isfunction)
        if f.__module__ == keys.__name__ and list(inspect.signature(f).parameters) == ["tenant"]
    }
    declared = {r.key for r in REDIS} | set(REDIS_NOT_PERSONAL)
    assert functions <= declared
    constants = {n for n, v in vars(keys).items() if n.isupper() and str(v).startswith("tw:")}
    assert constants - {"SETTINGS_CHANNEL_PATTERN", "TASKS_CHANNEL_PATTERN"} <= declared
    for r in REDIS:
        assert getattr(keys, r.key)("acme").startswith("tw:{acme}:")


def test_manifest_round_trip() -> None:
    """A manifest reads back as written."""
    m = Manifest("acme", 7, ("pc-1",), {"evidence": ("evidence/acme/ab/x",), "face_images": ()})
    assert Manifest.decode(m.encode()) == m


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_a_manifest_or_one_error(raw: bytes) -> None:
    """Whatever the store gives back, decoding is a Manifest or a PersonalDataError, nothing else."""
    try:
        Manifest.decode(raw)
    except PersonalDataError as exc:
        assert str(exc).startswith("erasure manifest: expected telework-erasure/1 JSON, got ")
