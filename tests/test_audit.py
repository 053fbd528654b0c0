"""The audit log's hash chain: appends, concurrent appends, and tampering named by verify."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.audit_models import AuditEntry
from storage.crypto import sha256_hex
from storage.evidence_store import object_key, open_store, save_evidence
from storage.hash_chain import GENESIS, Link, canonical_json, link_hash, verify_links
from storage.keyring import ensure_master_key

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _links(n: int) -> list[Link]:
    links, prev = [], GENESIS
    for seq in range(1, n + 1):
        fields = {"seq": seq, "action": "x", "at": T0 + timedelta(seconds=seq)}
        h = link_hash(prev, fields)
        links.append(Link(seq, prev, h, fields))
        prev = h
    return links


def test_canonical_json_is_deterministic() -> None:
    """Key order and time zones do not change the canonical form; naive times count as UTC."""
    jst = T0.astimezone(datetime.now().astimezone().tzinfo)
    a = canonical_json({"b": 1, "a": "é", "at": T0})
    assert a == canonical_json({"at": jst, "a": "é", "b": 1})
    assert a == canonical_json({"a": "é", "b": 1, "at": T0.replace(tzinfo=None)})
    assert a == '{"a":"é","at":"2026-11-02T09:00:00.000000+00:00","b":1}'.encode()


def test_pure_chain_detects_edit_and_removal() -> None:
    """An edited entry is a hash mismatch; a removed one breaks the next link; a seq gap alone is fine."""
    links = _links(5)
    assert verify_links(links)[1] == []
    edited = Link(3, links[2].prev_hash, links[2].hash, {**links[2].fields, "action": "y"})
    computed = link_hash(links[2].prev_hash, edited.fields)
    assert verify_links([*links[:2], edited, *links[3:]])[1] == [
        f"audit entry 3: hash mismatch (stored {links[2].hash}, computed {computed})"
    ]
    assert verify_links([*links[:2], *links[3:]])[1] == [
        f"audit entry 4: link broken (prev_hash {links[2].hash}, but the previous entry (2) has hash "
        f"{links[1].hash}): an entry before it was removed or re-hashed"
    ]
    state, _ = verify_links(links[:2])
    assert verify_links(links[2:], state) == (verify_links(links)[0], [])


def _append(engine: Engine, n: int, actor: str = "admin") -> None:
    for i in range(n):
        hash_chain_store.record(
            engine,
            actor=actor,
            action="incident.review",
            target=f"incident:{i}",
            tenant_id="acme",
            detail={"status": "confirmed", "score": 0.25, "n": i},
            at=T0 + timedelta(minutes=i),
        )


def test_chain_verifies_and_names_edited_entry(engine: Engine) -> None:
    """20 appended entries verify; editing entry 17's target is reported as exactly that entry."""
    _append(engine, 20)
    report = hash_chain_store.verify(engine, None)
    assert (report.entries, report.problems) == (20, [])
    with Session(engine) as s:
        stored = s.execute(select(col(AuditEntry.hash)).where(col(AuditEntry.seq) == 17)).scalar_one()
        s.execute(text("UPDATE audit_log SET target = 'incident:99' WHERE seq = 17"))
        s.commit()
        row = s.get(AuditEntry, 17)
        assert row is not None
        computed = link_hash(row.prev_hash, hash_chain_store.entry_fields(row))
    assert hash_chain_store.verify(engine, None).problems == [
        f"audit entry 17: hash mismatch (stored {stored}, computed {computed})"
    ]


def test_removed_entry_breaks_the_next_link(engine: Engine) -> None:
    """Deleting entry 5 of 8 is reported on entry 6, naming the hash it expected."""
    _append(engine, 8)
    with Session(engine) as s:
        hashes = dict(s.execute(select(col(AuditEntry.seq), col(AuditEntry.hash))).all())
        s.execute(text("DELETE FROM audit_log WHERE seq = 5"))
        s.commit()
    assert hash_chain_store.verify(engine, None).problems == [
        f"audit entry 6: link broken (prev_hash {hashes[5]}, but the previous entry (4) has hash "
        f"{hashes[4]}): an entry before it was removed or re-hashed"
    ]


def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    """Four threads appending at once still produce one unbroken chain."""
    threads = [threading.Thread(target=_append, args=(engine, 15, f"t{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    report = hash_chain_store.verify(engine, None)
    assert (report.entries, report.problems) == (60, [])
    with Session(engine) as s:
        assert (
            s.execute(select(col(AuditEntry.hash)).order_by(col(AuditEntry.seq).desc()).limit(1)).scalar_one()
            == report.head
        )


def test_append_rolls_back_with_the_action(engine: Engine) -> None:
    """An entry appended in a transaction that rolls back leaves no trace and no broken chain."""
    _append(engine, 2)
    with Session(engine) as s:
        hash_chain_store.append(s, actor="a", action="x", target="y")
        s.rollback()
    _append(engine, 1)
    report = hash_chain_store.verify(engine, None)
    assert (report.entries, report.problems) == (3, [])


def test_verify_checks_every_evidence_object(engine: Engine, tmp_path: Path) -> None:
    """verify decrypts all evidence; a flipped byte in one file is named, the other is fine."""
    accounts.create_tenant(engine, "acme", "Acme")
    ensure_master_key(tmp_path)
    store = open_store(ServerSettings(data_dir=tmp_path), engine)
    good, bad = b"good image" * 100, b"bad image" * 100
    for data in (good, bad):
        save_evidence(engine, store, "acme", data, kind="camera", taken_at=T0)
    path = tmp_path / "evidence" / object_key("acme", sha256_hex(bad))
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x80
    path.write_bytes(bytes(raw))
    report = hash_chain_store.verify(engine, store)
    assert (report.evidence, report.problems) == (
        2,
        [
            f"evidence {sha256_hex(bad)}: content hash mismatch (the ciphertext fails authentication: "
            "altered, or another object's)"
        ],
    )
