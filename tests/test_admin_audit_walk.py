"""The guard: every `telework admin` subcommand that changes state writes an audit entry, the read-only
ones write none, and a new subcommand fails this test until it is classified and exercised here."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.audit_trail import AuditAction, cli_actor
from storage.db import make_engine
from telework.cli import build_parser
from tests.admin_world import audit_as_admin, run

WHO = cli_actor()

READ_ONLY = {
    "tenant list": ["tenant", "list"],
    "tenant show": ["tenant", "show", "acme"],
    "user list": ["user", "list", "--tenant", "acme"],
    "agent list": ["agent", "list", "--tenant", "acme"],
    "settings show": ["settings", "show", "--tenant", "acme"],
    "settings history": ["settings", "history", "--tenant", "acme"],
    "task list": ["task", "list", "--tenant", "acme"],
}

# In order (each builds on the ones before), with the audit actions each must write (erase-user: at
# least these, its steps are audited one by one).
CHANGES: list[tuple[str, list[str], list[str]]] = [
    ("tenant create", ["tenant", "create", "acme", "--name", "Acme"], ["tenant.create"]),
    ("tenant update", ["tenant", "update", "acme", "--time-zone", "UTC"], ["tenant.update"]),
    ("user create", ["user", "create", "--tenant", "acme", "aiko", "--name", "Aiko"], ["user.create"]),
    ("user update", ["user", "update", "--tenant", "acme", "aiko", "--language", "en"], ["user.update"]),
    ("agent create", ["agent", "create", "--tenant", "acme", "pc-1", "--user", "aiko"], ["agent.create"]),
    ("agent revoke", ["agent", "revoke", "pc-1"], ["agent.revoke"]),
    ("agent reissue", ["agent", "reissue", "pc-1"], ["agent.reissue"]),
    ("settings set", ["settings", "set", "--tenant", "acme", "--away-after", "60"], ["settings.set"]),
    ("task create", ["task", "create", "--tenant", "acme", "Design"], ["task.create"]),
    ("task remove", ["task", "remove", "--tenant", "acme", "Design"], ["task.remove"]),
    ("export-user", ["export-user", "--tenant", "acme", "aiko", "--out", "{tmp}/aiko.zip"], ["user.export"]),
    ("tenant terminate", ["tenant", "terminate", "acme", "--yes"], ["tenant.terminate"]),
    ("tenant reinstate", ["tenant", "reinstate", "acme"], ["tenant.reinstate"]),
    ("erase-user", ["erase-user", "--tenant", "acme", "aiko", "--yes"], ["user.erase"]),
]


def admin_leaves() -> list[str]:
    """Every runnable `telework admin ...` subcommand, as "object action" (or "name" when it has none)."""

    def children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[str]:
        subs = children(parser)
        if not subs:
            yield " ".join(path)
        for name, sub in subs.items():
            yield from walk(sub, [*path, name])

    return sorted(walk(children(build_parser())["admin"], []))


def test_every_admin_subcommand_is_classified_here() -> None:
    """Each admin subcommand is either read-only or exercised below; none is both, none forgotten."""
    changing = [name for name, _, _ in CHANGES]
    assert sorted([*READ_ONLY, *changing]) == admin_leaves()


@pytest.fixture
def admin(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    for key in list(os.environ):
        if key.startswith("TELEWORK_") and not key.startswith("TELEWORK_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TELEWORK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    monkeypatch.setenv("TELEWORK_REDIS_URL", redis_url)
    engine = audit_as_admin(make_engine(database_url), tmp_path)
    yield engine
    engine.dispose()


def _new_entries(engine: Engine, after: int) -> list[AuditEntry]:
    with Session(engine) as s:
        rows = list(
            s.execute(
                select(AuditEntry).where(col(AuditEntry.seq) > after).order_by(col(AuditEntry.seq))
            ).scalars()
        )
        s.expunge_all()
    return rows


def test_every_state_changing_admin_command_writes_its_audit_entries(
    admin: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each changing command succeeds and appends exactly its entries (actor and source the OS user, an
    action of the one vocabulary, the tenant); each read-only command, run after each, appends none."""
    vocabulary = {str(a) for a in AuditAction}
    seq = 0
    for name, argv, actions in CHANGES:
        code, _out, err = run(["admin", *(a.replace("{tmp}", str(tmp_path)) for a in argv)], capsys)
        assert code == 0, f"{name}: {err}"
        new = _new_entries(admin, seq)
        done = [e.action for e in new]
        if name == "erase-user":
            assert set(actions) <= set(done), (name, done)
        else:
            assert done == actions, name
        for entry in new:
            assert (entry.actor, entry.detail.get("source"), entry.tenant_id) == (WHO, WHO, "acme"), name
            assert entry.action in vocabulary, name
        seq = new[-1].seq or seq
        if name in ("erase-user", "tenant terminate"):
            continue
        for reader, read_argv in READ_ONLY.items():
            code, _out, err = run(["admin", *read_argv], capsys)
            assert code == 0, f"{reader} after {name}: {err}"
        assert _new_entries(admin, seq) == [], f"a read-only command after {name} wrote an audit entry"
