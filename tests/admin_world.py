"""Tests' side of ``telework admin``: the CLI run in-process on the test database (the ``admin``
fixture), engines that audit as it does, and the audit entries read back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage.audit_models import AuditEntry
from storage.audit_trail import cli_actor
from storage.audit_witness import protect_with_settings
from storage.db import make_engine
from storage.keyring import ensure_master_key
from telework.cli import main


def audit_as_admin(engine: Engine, data_dir: Path) -> Engine:
    """``engine``, its audit entries authenticated under ``data_dir``'s master key as the CLI's are
    (so a test's own setup writes the same chain, and logs no warning about an unkeyed append)."""
    ensure_master_key(data_dir)
    protect_with_settings(engine, ServerSettings(data_dir=data_dir))
    return engine


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``telework ARGV`` in this process: exit code, stdout, stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


WHO = cli_actor()


@pytest.fixture
def admin(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The CLI on the test database and data folder, no Redis; the test's engine audits as the CLI does."""
    for key in list(os.environ):
        if key.startswith("TELEWORK_") and not key.startswith("TELEWORK_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TELEWORK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    engine = audit_as_admin(make_engine(database_url), tmp_path)
    yield engine
    engine.dispose()


def entries(engine: Engine, after: int = 0) -> list[tuple[Any, ...]]:
    """(action, target, tenant, actor, detail) of each audit entry after seq ``after``, oldest first."""
    with Session(engine) as s:
        rows = s.execute(
            select(AuditEntry).where(col(AuditEntry.seq) > after).order_by(col(AuditEntry.seq))
        ).scalars()
        return [(r.action, r.target, r.tenant_id, r.actor, r.detail) for r in rows]


def last_seq(engine: Engine) -> int:
    with Session(engine) as s:
        seqs = list(s.execute(select(col(AuditEntry.seq))).scalars())
    return max(seqs, default=0)


def ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must succeed silently on stderr; its stdout."""
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, ""), argv
    return out


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
