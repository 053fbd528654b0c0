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
from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.crypto import sha256_hex
from storage.keyring import ensure_master_key
from storage.personal_registry import BLOBS, HOLDINGS
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
    """Intact: exit 0 with a summary; an edited row: exit 1 and the entry named on its own line; an
    unknown --tenant: exit 2."""
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()  # the set-up's own
    for i in range(3):
        hash_chain_store.record(engine, actor="admin", action="x", target=f"t{i}", at=T)
    assert _call(run, tmp_path, "audit", "verify") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"audit log: {before + 3} entries, head {before + 3}:") and out.endswith(
        "; evidence: 0 object(s) checked; 0 problem(s)\n"
    )
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = :seq"), {"seq": before + 2})
    assert _call(run, tmp_path, "audit", "verify", "--no-evidence") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"audit entry {before + 2}: hash mismatch (stored ")
    assert _call(run, tmp_path, "audit", "verify", "--tenant", "nosuch") == 2
    assert capsys.readouterr().err.startswith("telework audit: error: tenant 'nosuch' does not exist")
    assert lines[1].endswith("evidence: not checked; 1 problem(s)")


def test_export_and_erase_commands(
    run: argparse.ArgumentParser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export-user writes the zip; erase-user needs --yes, then erases; errors are one line, exit 2."""
    out = tmp_path / "aiko.zip"
    assert _call(run, tmp_path, "admin", "export-user", "--tenant", "acme", "aiko", "--out", str(out)) == 0
    printed = capsys.readouterr()
    assert printed.out == f"user aiko of tenant acme exported to {out}\n"
    assert printed.err.startswith(
        "telework admin: warning: no Redis configured and no `telework up` running: "
    )
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
    erased = capsys.readouterr()
    lines = erased.out.splitlines()
    assert lines[0] == "user aiko of tenant acme erased (user:1)"
    assert len(lines) == 1 + len(HOLDINGS) + len(BLOBS)
    assert {"  database tw_user: 1 row(s) deleted", "  database event: 0 row(s) deleted"} <= set(lines)
    assert lines[-2:] == [
        "  evidence store evidence: 0 object(s) deleted",
        "  evidence store face_images: 0 object(s) deleted",
    ]
    assert erased.err.startswith("telework admin: warning: no Redis configured and no `telework up` running")
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


def test_a_rerun_finishes_an_interrupted_erasure(
    run: argparse.ArgumentParser, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object that cannot be deleted stops erase-user after the rows (exit 2, saying so); the same
    command again finishes it; a manifest the server did not write is warned about, never acted on."""
    from storage.evidence_store import open_store, save_evidence
    from storage.personal_erase import manifest_key

    settings = ServerSettings(data_dir=tmp_path)
    store = open_store(settings, engine)
    still = b"aiko's still" * 40
    save_evidence(engine, store, "acme", still, kind="camera", taken_at=T, user_id=1)
    stuck = Path(store.where("acme", sha256_hex(still)))
    stuck.unlink()
    (stuck / "in-the-way").mkdir(parents=True)  # unlink() of a directory fails, also for root
    erase = ("admin", "erase-user", "--tenant", "acme", "aiko", "--yes")
    assert _call(run, tmp_path, *erase) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "telework admin: error: user:1 of tenant acme is erased from the database, but the erasure is "
        "unfinished (IsADirectoryError: "
    )
    assert err.endswith("run `telework admin erase-user --tenant acme ... --yes` again to finish it\n")
    (stuck / "in-the-way").rmdir()
    stuck.rmdir()
    assert _call(run, tmp_path, *erase) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "finished the erasure of user:1 of tenant acme, begun earlier"
    assert "  evidence store evidence: 1 object(s) deleted" in lines
    assert not stuck.exists() and not store.backend.exists(manifest_key("acme", 1))

    store.backend.put(manifest_key("acme", 1), b'{"format": "telework-erasure/1", "blobs": {"x": ["a/b"]}}')
    assert _call(run, tmp_path, "admin", "erase-user", "--tenant", "acme", "nobody", "--yes") == 2
    err_lines = capsys.readouterr().err.splitlines()
    assert err_lines[0].startswith(
        f"telework admin: warning: erasure manifest {tmp_path}/evidence/erasure/acme/1.json"
    )
    assert err_lines[0].endswith("it was left as it is, remove it once checked")
    assert err_lines[1] == "telework admin: error: user 'nobody' does not exist in tenant 'acme'"
    assert _call(run, tmp_path, "admin", "erase-user", "--tenant", "nosuch", "aiko", "--yes") == 2
    assert capsys.readouterr().err == "telework admin: error: tenant 'nosuch' does not exist\n"
