"""`telework audit head | verify` through the real CLI: each kind of tampering is found and named."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.audit_models import AuditEntry
from storage.audit_witness import WITNESS_KEY
from storage.crypto import sha256_hex
from storage.evidence_store import EvidenceStore, object_key, open_store, save_evidence
from storage.hash_chain import GENESIS, Head, encode_witness, link_hash
from storage.keyring import ensure_master_key
from telework.cli import main

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MAC_MISMATCH = (
    "MAC mismatch (the entry was rewritten or re-hashed without the audit key, or the configured "
    "master key is not the one it was written with)"
)


@pytest.fixture
def store(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> EvidenceStore:
    """A deployment in tmp_path (master key, local evidence) whose engine appends like a server's."""
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    ensure_master_key(tmp_path)
    return open_store(ServerSettings(data_dir=tmp_path), engine)


def _append(engine: Engine, n: int) -> None:
    for i in range(n):
        hash_chain_store.record(
            engine, actor="admin", action="user.update", target=f"user:{i}", tenant_id="acme",
            detail={"name": ["Aiko", "Aiko S."]}, at=T0 + timedelta(minutes=i),
        )  # fmt: skip


def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run ``telework audit ...`` on the deployment; (exit code, stdout lines)."""
    code = main(["audit", *argv, "--data-dir", str(tmp_path)])
    return code, capsys.readouterr().out.splitlines()


def _hashes(engine: Engine) -> dict[int, str]:
    with Session(engine) as s:
        return {seq: h for seq, h in s.execute(select(col(AuditEntry.seq), col(AuditEntry.hash))).all()}


def _rewrite(engine: Engine, seq: int, target: str, strip_macs: bool = False) -> dict[int, str]:
    """Edit entry ``seq``'s target and recompute every plain hash from it on, as an attacker can."""
    with Session(engine) as s:
        rows = (
            s.execute(select(AuditEntry).where(col(AuditEntry.seq) >= seq).order_by(col(AuditEntry.seq)))
            .scalars()
            .all()
        )
        prev = rows[0].prev_hash
        for row in rows:
            if row.seq == seq:
                row.target = target
            row.prev_hash = prev
            row.hash = prev = link_hash(prev, hash_chain_store.entry_fields(row))
            if strip_macs:
                row.mac = None
            s.add(row)
            s.flush()
        s.commit()
    return _hashes(engine)


def _witness(tmp_path: Path) -> Path:
    return tmp_path / "evidence" / WITNESS_KEY


def test_intact_chain_head_and_verify(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit head` prints SEQ:HASH of the newest entry; verify with it: exit 0 and the exact summary."""
    assert _cli(tmp_path, capsys, "head") == (0, [f"0:{GENESIS}"])
    _append(engine, 4)
    head = Head(4, _hashes(engine)[4])
    assert _cli(tmp_path, capsys, "head") == (0, [str(head)])
    assert _cli(tmp_path, capsys, "verify", "--head", str(head)) == (
        0,
        [f"audit log: 4 entries, head {head}, witness entry 4; evidence: 0 object(s) checked; 0 problem(s)"],
    )


def test_edited_entry_with_recomputed_hashes_is_found(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One entry edited and every plain hash recomputed: the MACs from it on, the witness, --head all fail."""
    _append(engine, 4)
    before = _hashes(engine)
    after = _rewrite(engine, 2, "user:99")
    code, lines = _cli(tmp_path, capsys, "verify", "--head", f"4:{before[4]}")
    assert code == 1
    assert lines == [
        f"audit entry 2: {MAC_MISMATCH}",
        f"audit entry 3: {MAC_MISMATCH}",
        f"audit entry 4: {MAC_MISMATCH}",
        f"the audit head witness ({_witness(tmp_path)}) names entry 4 (hash {before[4]}), but the stored "
        f"entry has hash {after[4]}: the chain was rewritten",
        f"the head given (--head) names entry 4 (hash {before[4]}), but the stored entry has hash "
        f"{after[4]}: the chain was rewritten",
        f"audit log: 4 entries, head 4:{after[4]}, witness entry 4, not in the chain; evidence: 0 object(s) "
        "checked; 5 problem(s)",
    ]


def test_audit_head_refuses_a_tampered_head(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit head` does not print a head whose MAC fails: one line on stderr, exit 2."""
    _append(engine, 3)
    _rewrite(engine, 3, "user:99")
    assert main(["audit", "head", "--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        "telework audit: error: audit entry 3 (the newest): MAC mismatch; run `telework audit verify`\n",
    )


def test_macs_stripped_and_hashes_recomputed_is_found(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole chain rewritten as an unauthenticated one of an older version: the witness shows it."""
    _append(engine, 3)
    before = _hashes(engine)
    after = _rewrite(engine, 1, "user:99", strip_macs=True)
    code, lines = _cli(tmp_path, capsys, "verify")
    assert (code, lines[0]) == (
        1,
        f"the audit head witness ({_witness(tmp_path)}) names entry 3 (hash {before[3]}), but the stored "
        f"entry has hash {after[3]}: the chain was rewritten",
    )
    assert len(lines) == 2


def test_newest_entry_deleted_is_found(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The newest entry deleted: the witness names it; with the witness deleted too, --head does."""
    _append(engine, 4)
    hashes = _hashes(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    ends = (
        "but the chain ends at entry 3: the newest entries were removed (or the database was restored "
        "from an older backup)"
    )
    assert _cli(tmp_path, capsys, "verify") == (
        1,
        [
            f"the audit head witness ({_witness(tmp_path)}) names entry 4 (hash {hashes[4]}), {ends}",
            f"audit log: 3 entries, head 3:{hashes[3]}, witness entry 4, not in the chain; evidence: 0 "
            "object(s) checked; 1 problem(s)",
        ],
    )
    _witness(tmp_path).unlink()
    code, lines = _cli(tmp_path, capsys, "verify", "--no-evidence", "--head", f"4:{hashes[4]}")
    assert (code, lines[1:]) == (
        1,
        [
            f"the head given (--head) names entry 4 (hash {hashes[4]}), {ends}",
            f"audit log: 3 entries, head 3:{hashes[3]}, witness missing; evidence: not checked; 2 problem(s)",
        ],
    )
    assert lines[0] == (
        f"the evidence store has no audit head witness ({_witness(tmp_path)}), but the chain has "
        "authenticated entries from entry 1 on: the witness was deleted, or its first write failed (see "
        "the log of the process that appended that entry)"
    )


def test_all_entries_deleted_is_found_without_head(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every audit row deleted: the witness in the evidence store names what is gone (no --head needed)."""
    _append(engine, 3)
    hashes = _hashes(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    assert _cli(tmp_path, capsys, "verify") == (
        1,
        [
            f"the audit head witness ({_witness(tmp_path)}) names entry 3 (hash {hashes[3]}), but the audit "
            "log is empty: every entry was deleted",
            f"audit log: 0 entries, head 0:{GENESIS}, witness entry 3, not in the chain; evidence: 0 "
            "object(s) checked; 1 problem(s)",
        ],
    )
    code, lines = _cli(tmp_path, capsys, "verify", "--head", f"3:{hashes[3]}")
    assert (code, lines[1]) == (
        1,
        f"the head given (--head) names entry 3 (hash {hashes[3]}), but the audit log is empty: every "
        "entry was deleted",
    )


def test_flipped_evidence_byte_is_found(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One byte of an evidence file flipped: that object is named, exit 1; the chain stays intact."""
    accounts.create_tenant(engine, "acme", "Acme")
    image = b"\xff\xd8 still " * 200
    save_evidence(engine, store, "acme", image, kind="camera", taken_at=T0)
    path = tmp_path / "evidence" / object_key("acme", sha256_hex(image))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    code, lines = _cli(tmp_path, capsys, "verify")
    assert (code, lines[:-1]) == (
        1,
        [
            f"evidence {sha256_hex(image)}: content hash mismatch (the ciphertext fails authentication: "
            "altered, or another object's)"
        ],
    )
    assert lines[-1].endswith("; evidence: 1 object(s) checked; 1 problem(s)")


def test_forged_witness_and_entry_after_truncation(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A witness under another key is named; after truncation, new appends do not move the witness on."""
    _append(engine, 3)
    hashes = _hashes(engine)
    genuine = _witness(tmp_path).read_bytes()
    _witness(tmp_path).write_bytes(encode_witness(b"x" * 32, Head(2, hashes[2])))
    code, lines = _cli(tmp_path, capsys, "verify")
    assert (code, lines[0]) == (
        1,
        f"the audit head witness ({_witness(tmp_path)}): MAC mismatch for head 2:{hashes[2]} (altered, or "
        "written under another master key)",
    )
    _witness(tmp_path).write_bytes(genuine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    _append(engine, 2)  # SQLite reuses seq 3, PostgreSQL goes on at 4
    assert _witness(tmp_path).read_bytes() == genuine
    code, lines = _cli(tmp_path, capsys, "verify")
    assert code == 1
    assert lines[0].startswith(
        f"the audit head witness ({_witness(tmp_path)}) names entry 3 (hash {hashes[3]}), "
    )


def test_bad_head_argument_is_a_usage_error(
    store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--head that is not SEQ:HASH (control characters, upper case, huge seq) is refused, exit 2."""
    for bad in ("4:" + "A" * 64, "4:\x1b[2J" + "a" * 60, f"{2**64}:" + "a" * 64, "../../etc"):
        with pytest.raises(SystemExit) as exit_:
            main(["audit", "verify", "--head", bad, "--data-dir", str(tmp_path)])
        assert exit_.value.code == 2
        assert "argument --head: expected " in capsys.readouterr().err


APPENDER = """
import sys
from datetime import UTC, datetime
from core.settings import ServerSettings
from storage import hash_chain_store
from storage.db import make_engine
from storage.evidence_store import open_store

url, data_dir, name = sys.argv[1], sys.argv[2], sys.argv[3]
T0 = datetime(2026, 11, 2, tzinfo=UTC)
engine = make_engine(url)
open_store(ServerSettings(data_dir=data_dir), engine)
for i in range(20):
    hash_chain_store.record(engine, actor=name, action="x", target=f"t{i}", at=T0)
engine.dispose()
"""


def test_two_processes_appending_never_put_the_witness_ahead(
    engine: Engine,
    store: EvidenceStore,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two processes appending at once: one valid chain, and the witness names an entry it holds."""
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, database_url, str(tmp_path), f"p{i}"], cwd=ROOT)
        for i in range(2)
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    code, lines = _cli(tmp_path, capsys, "verify", "--no-evidence")
    head = Head(max(_hashes(engine)), _hashes(engine)[max(_hashes(engine))])
    assert code == 0
    assert re.fullmatch(
        rf"audit log: 40 entries, head {head}, witness entry \d+(, behind the head \({head.seq}\))?; "
        r"evidence: not checked; 0 problem\(s\)",
        lines[-1],
    ), lines


def test_verify_without_the_master_key_says_what_it_did_not_check(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No master key: the hashes are checked, the MACs and the witness are not, and that is a problem."""
    _append(engine, 3)
    elsewhere = tmp_path / "no-key"
    code = main(["audit", "verify", "--no-evidence", "--data-dir", str(elsewhere)])
    assert (code, capsys.readouterr().out.splitlines()) == (
        1,
        [
            "3 audit entries carry a MAC that was not checked: no master key is configured "
            "(TELEWORK_MASTER_KEY)",
            f"audit log: 3 entries, head 3:{_hashes(engine)[3]}, witness not checked (no master key); "
            "evidence: not checked; 1 problem(s)",
        ],
    )
    assert not (elsewhere / "master.key").exists()


def test_hostile_values_in_the_table_are_reported_escaped(
    engine: Engine, store: EvidenceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control characters and non-ASCII text in hash, prev_hash and mac: named, escaped, no crash."""
    _append(engine, 3)
    hashes = _hashes(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET mac = 'h1:é' WHERE seq = 1"))
        conn.execute(text("UPDATE audit_log SET prev_hash = 'ü\x1b[2J' WHERE seq = 2"))
        conn.execute(text("UPDATE audit_log SET hash = '\x1b[1A\x1b[2K' WHERE seq = 3"))
    code, lines = _cli(tmp_path, capsys, "verify", "--no-evidence")
    assert code == 1
    assert not any("\x1b" in line for line in lines)
    assert lines[0] == f"audit entry 1: {MAC_MISMATCH}"
    assert lines[1].startswith(
        f"audit entry 2: link broken (prev_hash 'ü\\x1b[2J', but the previous entry (1) has hash {hashes[1]})"
    )
    assert "head 3:'\\x1b[1A\\x1b[2K'" in lines[-1]
