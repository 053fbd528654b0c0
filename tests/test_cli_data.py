"""The data commands: audit verify, retention once, admin export-user / erase-user."""

from __future__ import annotations

import argparse
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from core.process import run_command
from storage import accounts, hash_chain_store
from storage.keyring import ensure_master_key
from telework.cli_base import Parser
from telework.cli_data import add_admin_parsers, add_parsers

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    """The commands mounted as telework.cli mounts them (root sub-parsers and ``admin``)."""
    root = Parser(prog="telework")
    root.add_argument("--log-level")
    sub = root.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_parsers(sub, Parser)
    admin = sub.add_parser("admin")
    add_admin_parsers(admin.add_subparsers(dest="what", required=True, parser_class=Parser), Parser)
    return root


@pytest.fixture
def run(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> argparse.ArgumentParser:
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    ensure_master_key(tmp_path)
    accounts.create_tenant(engine, "acme", "Acme")
    accounts.create_user(engine, "acme", "aiko", "Aiko")
    return _parser()


def _call(parser: argparse.ArgumentParser, tmp_path: Path, *argv: str) -> int:
    """Parse and run as ``telework`` does: an operator error is one line on stderr and exit 2."""
    args = parser.parse_args([*argv, "--data-dir", str(tmp_path)])
    return run_command(f"telework {args.command}", lambda: args.func(args))


def test_audit_verify_exit_codes(
    run: argparse.ArgumentParser, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Intact: exit 0 with a summary; an edited row: exit 1 and the entry named on its own line."""
    for i in range(3):
        hash_chain_store.record(engine, actor="admin", action="x", target=f"t{i}", at=T)
    assert _call(run, tmp_path, "audit", "verify") == 0
    out = capsys.readouterr().out
    assert out.startswith("audit log: 3 entries, head ") and out.endswith(
        "; evidence: 0 object(s) checked; 0 problem(s)\n"
    )
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    assert _call(run, tmp_path, "audit", "verify", "--no-evidence") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("audit entry 2: hash mismatch (stored ")
    assert lines[1].endswith("evidence: not checked; 1 problem(s)")


def test_export_and_erase_commands(
    run: argparse.ArgumentParser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export-user writes the zip; erase-user needs --yes, then erases; errors are one line, exit 2."""
    out = tmp_path / "aiko.zip"
    assert _call(run, tmp_path, "admin", "export-user", "--tenant", "acme", "aiko", "--out", str(out)) == 0
    assert capsys.readouterr().out == f"user aiko of tenant acme exported to {out}\n"
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("person.json"))["user"]["login"] == "aiko"
    assert _call(run, tmp_path, "admin", "erase-user", "--tenant", "acme", "aiko") == 2
    assert capsys.readouterr().err == (
        "telework admin: error: erasing user aiko of tenant acme cannot be undone; add --yes to confirm\n"
    )
    assert (
        _call(run, tmp_path, "admin", "erase-user", "--tenant", "acme", "aiko", "--yes", "--actor", "dpo")
        == 0
    )
    assert capsys.readouterr().out == "user aiko of tenant acme erased (tw_user 1)\n"
    assert _call(run, tmp_path, "admin", "erase-user", "--tenant", "acme", "aiko", "--yes") == 2
    assert capsys.readouterr().err == ("telework admin: error: user 'aiko' does not exist in tenant 'acme'\n")


def test_retention_once(
    run: argparse.ArgumentParser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """retention once prints the pass's JSON summary with the cut-off 90 days before --now."""
    assert _call(run, tmp_path, "retention", "once", "--now", "2026-11-25T12:00:00+09:00") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["cutoff"], summary["events"], summary["stopped"]) == (
        "2026-08-27T03:00:00+00:00",
        0,
        False,
    )


def test_missing_master_key(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Without a master key evidence checks stop with one line naming it; the chain alone needs none."""
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    assert _call(_parser(), tmp_path, "audit", "verify") == 2
    assert capsys.readouterr().err.startswith("telework audit: error: TELEWORK_MASTER_KEY: not set")
    assert _call(_parser(), tmp_path, "audit", "verify", "--no-evidence") == 0
