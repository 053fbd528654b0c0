"""The audit log's hash chain: pure maths (links, MACs, heads, witness), appends, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.config import ConfigError
from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.audit_models import AuditEntry
from storage.audit_witness import WITNESS_KEY, protect_with_settings, read_witness
from storage.crypto import new_key, sha256_hex
from storage.db import make_engine
from storage.evidence_store import EvidenceStore, object_key, open_store, save_evidence
from storage.hash_chain import (
    GENESIS,
    MAX_SEQ,
    ChainState,
    Head,
    Link,
    canonical_json,
    check_head,
    encode_witness,
    link_hash,
    link_mac,
    parse_head,
    parse_witness,
    verify_links,
)
from storage.keyring import AUDIT_CHAIN_PURPOSE, audit_chain_key, ensure_master_key, load_master_key

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
KEY = b"k" * 32
HASHES = st.text("0123456789abcdef", min_size=64, max_size=64)


def _links(n: int, key: bytes | None = None, start: int = 1, prev: str = GENESIS) -> list[Link]:
    links = []
    for seq in range(start, start + n):
        fields = {"seq": seq, "action": "x", "at": T0 + timedelta(seconds=seq)}
        h = link_hash(prev, fields)
        links.append(Link(seq, prev, h, fields, link_mac(key, seq, h) if key else None))
        prev = h
    return links


def _rehashed(links: list[Link], index: int, fields: dict[str, object], key: bytes | None) -> list[Link]:
    """``links`` with entry ``index`` edited and every hash from it on recomputed (MACs kept or ``key``'s)."""
    out, prev = list(links[:index]), links[index].prev_hash
    for i, link in enumerate(links[index:]):
        new_fields = {**link.fields, **fields} if i == 0 else dict(link.fields)
        h = link_hash(prev, new_fields)
        out.append(Link(link.seq, prev, h, new_fields, link_mac(key, link.seq, h) if key else link.mac))
        prev = h
    return out


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
    assert verify_links(links, KEY)[1] == []
    edited = Link(3, links[2].prev_hash, links[2].hash, {**links[2].fields, "action": "y"})
    computed = link_hash(links[2].prev_hash, edited.fields)
    assert verify_links([*links[:2], edited, *links[3:]], KEY)[1] == [
        f"audit entry 3: hash mismatch (stored {links[2].hash}, computed {computed})"
    ]
    assert verify_links([*links[:2], *links[3:]], KEY)[1] == [
        f"audit entry 4: link broken (prev_hash {links[2].hash}, but the previous entry (2) has hash "
        f"{links[1].hash}): an entry before it was removed or re-hashed"
    ]
    state, _ = verify_links(links[:2], KEY)
    assert verify_links(links[2:], KEY, state) == (verify_links(links, KEY)[0], [])


def test_recomputed_hashes_fail_the_mac() -> None:
    """An entry edited with every plain hash recomputed: each re-hashed entry's MAC fails, and only those."""
    links = _links(5, KEY)
    state, problems = verify_links(links, KEY)
    assert (problems, state.authenticated_from, state.head) == ([], 1, Head(5, links[-1].hash))
    mismatch = (
        "MAC mismatch (the entry was rewritten or re-hashed without the audit key, or the configured "
        "master key is not the one it was written with)"
    )
    assert verify_links(_rehashed(links, 2, {"action": "y"}, None), KEY)[1] == [
        f"audit entry {seq}: {mismatch}" for seq in (3, 4, 5)
    ]
    other_key = b"o" * 32
    assert verify_links(_rehashed(links, 2, {"action": "y"}, other_key), KEY)[1] == [
        f"audit entry {seq}: {mismatch}" for seq in (3, 4, 5)
    ]
    assert verify_links(links, other_key)[1] == [f"audit entry {seq}: {mismatch}" for seq in range(1, 6)]


def test_macs_stripped_or_missing_after_authenticated_entries() -> None:
    """Entries of older versions are accepted only before the first MAC; no MAC after one is named."""
    legacy = _links(2)
    keyed = _links(3, KEY, start=3, prev=legacy[-1].hash)
    state, problems = verify_links([*legacy, *keyed], KEY)
    assert (problems, state.authenticated_from, state.checked) == ([], 3, 5)
    stripped = [*legacy, keyed[0], Link(4, keyed[1].prev_hash, keyed[1].hash, keyed[1].fields), keyed[2]]
    assert verify_links(stripped, KEY)[1] == [
        "audit entry 4: no MAC, but the entries from 3 on are authenticated: its MAC was removed, or a "
        "process without the master key appended it"
    ]
    state, problems = verify_links(keyed, None, verify_links(legacy, None)[0])
    assert (problems, state.unchecked) == ([], 3)


@given(st.integers(0, MAX_SEQ), HASHES)
def test_head_round_trips(seq: int, hash_: str) -> None:
    """Every valid head parses back from its printed form (seq 0 only with the empty chain's hash)."""
    if (seq == 0) != (hash_ == GENESIS):
        with pytest.raises(ValueError, match="seq 0 only with the empty chain's hash"):
            parse_head(f"{seq}:{hash_}")
    else:
        assert parse_head(str(Head(seq, hash_))) == Head(seq, hash_)


@given(st.text(max_size=200))
def test_parse_head_rejects_other_text(text: str) -> None:
    """Any other text is a ValueError saying what was expected (never another exception)."""
    try:
        head = parse_head(text)
    except ValueError as exc:
        assert str(exc).startswith("expected ")
    else:
        assert str(head) == text.strip()


def test_parse_head_rejections() -> None:
    """Upper case, signs, leading zeros, control characters and seqs past 2**63 - 1 are refused."""
    h = "ab" * 32
    for bad in (f"5:{h.upper()}", f"+5:{h}", f"05:{h}", f"5:{h}\x00", f"5\n:{h}", f"-1:{h}", "", "5"):
        with pytest.raises(ValueError, match="expected SEQ:HASH"):
            parse_head(bad)
    with pytest.raises(ValueError, match=f"expected a seq of at most {MAX_SEQ}, got {MAX_SEQ + 1}"):
        parse_head(f"{MAX_SEQ + 1}:{h}")
    with pytest.raises(ValueError, match=r"got 'xxxx.*\.\.\.'$"):
        parse_head("x" * 10_000)


@given(st.integers(1, MAX_SEQ), HASHES.filter(lambda h: h != GENESIS))
def test_witness_round_trips_under_its_key_only(seq: int, hash_: str) -> None:
    """A witness parses back under its key; under another key it is a MAC mismatch."""
    blob = encode_witness(KEY, Head(seq, hash_))
    assert parse_witness(blob, KEY) == Head(seq, hash_)
    with pytest.raises(ValueError, match=f"MAC mismatch for head {seq}:{hash_}"):
        parse_witness(blob, b"o" * 32)


@given(st.binary(max_size=300))
def test_parse_witness_rejects_garbage(blob: bytes) -> None:
    """Arbitrary bytes are a ValueError saying what was expected, never another exception."""
    with pytest.raises(ValueError, match=r"^expected |MAC mismatch"):
        parse_witness(blob, KEY)


def test_parse_witness_rejections() -> None:
    """A link MAC in place of a head MAC, wrong types and huge objects are refused by name."""
    head = Head(3, "ab" * 32)
    as_link = canonical_json({"v": 1, "seq": 3, "hash": head.hash, "mac": link_mac(KEY, 3, head.hash)})
    with pytest.raises(ValueError, match="MAC mismatch for head 3:"):
        parse_witness(as_link, KEY)
    for fields, message in (
        ({"v": True, "seq": 3, "hash": head.hash, "mac": "h1:" + "0" * 64}, "expected version 1, got True"),
        ({"v": 1, "seq": "3", "hash": head.hash, "mac": "h1:" + "0" * 64}, "expected an integer seq"),
        ({"v": 1, "seq": 3, "hash": head.hash}, "expected the fields hash, mac, seq, v, got"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_witness(canonical_json(fields), KEY)
    with pytest.raises(ValueError, match="expected at most 1024 bytes of JSON, got 5000 bytes"):
        parse_witness(b" " * 5000, KEY)


def test_check_head_names_each_case() -> None:
    """A kept head is fine when the chain holds it (grown or not) and names truncation, loss, rewrite."""
    h = "ab" * 32
    head = Head(5, h)
    grown = ChainState(seq=7, hash="cd" * 32, checked=7)
    assert check_head(head, h, grown, "H") == []
    assert check_head(Head(0, GENESIS), None, ChainState(), "H") == []
    assert check_head(head, None, ChainState(), "H") == [
        f"H names entry 5 (hash {h}), but the audit log is empty: every entry was deleted"
    ]
    assert check_head(head, None, ChainState(seq=4, checked=4), "H") == [
        f"H names entry 5 (hash {h}), but the chain ends at entry 4: the newest entries were removed "
        "(or the database was restored from an older backup)"
    ]
    assert check_head(head, None, grown, "H") == [
        f"H names entry 5 (hash {h}), which is not in the audit log: it was removed"
    ]
    assert check_head(head, "ef" * 32, grown, "H") == [
        f"H names entry 5 (hash {h}), but the stored entry has hash {'ef' * 32}: the chain was rewritten"
    ]


def test_audit_key_is_derived_not_the_master_key() -> None:
    """The chain key is HKDF(master, audit-chain purpose): fixed for a master key, distinct per master."""
    master = new_key()
    assert AUDIT_CHAIN_PURPOSE == b"telework/audit-chain/v1"
    assert audit_chain_key(master) == audit_chain_key(master) != master
    assert audit_chain_key(new_key()) != audit_chain_key(master)


# ---------------------------------------------------------------- the database


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


def _protected(engine: Engine, tmp_path: Path) -> EvidenceStore:
    ensure_master_key(tmp_path)
    return open_store(ServerSettings(data_dir=tmp_path), engine)


def _db_head(engine: Engine) -> Head:
    with Session(engine) as s:
        seq, h = s.execute(
            select(col(AuditEntry.seq), col(AuditEntry.hash)).order_by(col(AuditEntry.seq).desc()).limit(1)
        ).one()
    return Head(seq, h)


def test_chain_verifies_and_names_edited_entry(engine: Engine) -> None:
    """20 appended entries verify; editing entry 17's target is reported as exactly that entry."""
    _append(engine, 20)
    report = hash_chain_store.verify(engine, None)
    assert (report.entries, report.witness, report.problems) == (20, "not checked (no master key)", [])
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


def test_protected_appends_are_maced_and_witnessed(engine: Engine, tmp_path: Path) -> None:
    """On a protected engine each entry has its MAC under the derived key, and the witness is the head."""
    store = _protected(engine, tmp_path)
    _append(engine, 3)
    key = audit_chain_key(load_master_key(ServerSettings(data_dir=tmp_path)))
    with Session(engine) as s:
        rows = s.execute(select(AuditEntry).order_by(col(AuditEntry.seq))).scalars().all()
        assert [r.mac for r in rows] == [link_mac(key, r.seq or 0, r.hash) for r in rows]
    assert read_witness(store.backend, key) == _db_head(engine)
    assert (tmp_path / "evidence" / WITNESS_KEY).stat().st_mode & 0o777 == 0o600
    report = hash_chain_store.verify(engine, store)
    assert (report.entries, report.witness, report.problems) == (3, "entry 3", [])


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


def test_concurrent_appends_keep_one_chain(engine: Engine, tmp_path: Path) -> None:
    """Four threads appending at once on a protected engine: one chain, the witness never past the head."""
    store = _protected(engine, tmp_path)
    threads = [threading.Thread(target=_append, args=(engine, 15, f"t{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    report = hash_chain_store.verify(engine, store)
    assert (report.entries, report.problems) == (60, [])
    assert report.head == _db_head(engine)
    assert report.witness == f"entry {report.head.seq}"  # the last witness write saw the final head


def test_append_rolls_back_with_the_action(engine: Engine, tmp_path: Path) -> None:
    """An entry appended in a transaction that rolls back leaves no trace, no broken chain, no witness."""
    store = _protected(engine, tmp_path)
    _append(engine, 2)
    with Session(engine) as s:
        hash_chain_store.append(s, actor="a", action="x", target="y")
        s.rollback()
    assert read_witness(store.backend, store.chain_guard().key) == _db_head(engine)
    _append(engine, 1)
    report = hash_chain_store.verify(engine, store)
    assert (report.entries, report.witness, report.problems) == (3, f"entry {report.head.seq}", [])


def test_unprotected_append_after_authenticated_ones_is_reported(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """A process without the key appending to an authenticated chain is named, not silently accepted."""
    _append(engine, 1)  # an entry of an older version: accepted
    store = _protected(engine, tmp_path)
    _append(engine, 1)
    other = make_engine(database_url)  # another process's engine, unprotected
    _append(other, 1)
    other.dispose()
    report = hash_chain_store.verify(engine, store)
    assert report.problems == [
        "audit entry 3: no MAC, but the entries from 2 on are authenticated: its MAC was removed, or a "
        "process without the master key appended it"
    ]
    assert report.witness == "entry 2, behind the head (3)"


def test_witness_never_moves_backwards(engine: Engine, tmp_path: Path) -> None:
    """A witness naming a later entry than the committed head (a restored database) is left as it is."""
    store = _protected(engine, tmp_path)
    ahead = encode_witness(store.chain_guard().key, Head(99, "ab" * 32))
    store.backend.put(WITNESS_KEY, ahead)
    _append(engine, 2)
    assert store.backend.get(WITNESS_KEY) == ahead
    assert hash_chain_store.verify(engine, store).witness == "entry 99, not in the chain"


def test_lazy_protection_reads_the_key_at_the_first_append(engine: Engine, tmp_path: Path) -> None:
    """protect_with_settings: embedded mode creates DATA_DIR/master.key (0600) at the first append only."""
    protect_with_settings(engine, ServerSettings(data_dir=tmp_path))
    assert not (tmp_path / "master.key").exists()
    _append(engine, 1)
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    report = hash_chain_store.verify(engine, open_store(ServerSettings(data_dir=tmp_path), engine))
    assert (report.entries, report.witness, report.problems) == (1, "entry 1", [])


def test_lazy_protection_without_a_key_refuses_the_action(engine: Engine, tmp_path: Path) -> None:
    """A configured key file that is missing stops the audited action (rolled back), naming the variable."""
    settings = ServerSettings(data_dir=tmp_path, master_key_file=tmp_path / "nope.key")
    protect_with_settings(engine, settings)
    with pytest.raises(ConfigError, match=r"^TELEWORK_MASTER_KEY_FILE: key file .*nope.key does not exist"):
        _append(engine, 1)
    with Session(engine) as s:
        assert s.execute(select(col(AuditEntry.seq))).all() == []


def test_verify_checks_every_evidence_object(engine: Engine, tmp_path: Path) -> None:
    """verify decrypts all evidence; a flipped byte in one file is named, the other is fine."""
    accounts.create_tenant(engine, "acme", "Acme")
    store = _protected(engine, tmp_path)
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
