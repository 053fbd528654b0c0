"""Encrypted evidence store: local folder and S3-compatible bucket (a real moto server over HTTP)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.config import ConfigError
from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.audit_witness import WITNESS_KEY, read_witness
from storage.blob_backends import LocalBackend
from storage.crypto import sha256_hex
from storage.evidence_models import EvidenceObject
from storage.evidence_store import EvidenceError, EvidenceStore, object_key, open_store, save_evidence
from storage.keyring import ensure_master_key
from tests.waiting import wait_until_sync

PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"  # a JPEG-framed 10 KB payload
TAKEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto in server mode) on 127.0.0.1."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_sync(lambda: _accepts(port) or proc.poll() is not None, 30, what="moto server listening")
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _settings(tmp_path: Path, backend: str, endpoint: str | None) -> ServerSettings:
    ensure_master_key(tmp_path)
    if backend == "local":
        return ServerSettings(data_dir=tmp_path)
    return ServerSettings(
        data_dir=tmp_path,
        evidence_backend="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=f"ev-{tmp_path.name.lower().replace('_', '-')[-40:]}",
        s3_access_key="testing",
        s3_secret_key="testing",
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, engine: Engine) -> EvidenceStore:
    """An evidence store on each backend, with tenants acme and other."""
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    accounts.create_tenant(engine, "acme", "Acme")
    accounts.create_tenant(engine, "other", "Other")
    return open_store(_settings(tmp_path, request.param, endpoint), engine)


def _raw(store: EvidenceStore, tenant: str, sha: str) -> bytes:
    return store.backend.get(object_key(tenant, sha))


def test_save_get_round_trip(engine: Engine, store: EvidenceStore) -> None:
    """An image is stored as ciphertext only, described by one row, and read back intact."""
    row_id = save_evidence(engine, store, "acme", PHOTO, kind="camera", taken_at=TAKEN, agent_id="pc-1")
    sha = sha256_hex(PHOTO)
    assert save_evidence(engine, store, "acme", PHOTO, kind="camera", taken_at=TAKEN) == row_id
    with Session(engine) as s:
        rows = list(s.execute(select(EvidenceObject)).scalars())
    assert [(r.id, r.tenant_id, r.sha256, r.kind, r.size, r.storage_key, r.agent_id) for r in rows] == [
        (row_id, "acme", sha, "camera", len(PHOTO), object_key("acme", sha), "pc-1")
    ]
    raw = _raw(store, "acme", sha)
    assert PHOTO[4:64] not in raw
    assert rows[0].key_id.encode() in raw[:80]
    assert store.get("acme", sha) == PHOTO
    assert store.check("acme", sha) is None


def test_flipped_byte_detected(engine: Engine, store: EvidenceStore) -> None:
    """One flipped ciphertext byte is reported as a content hash mismatch naming the object."""
    save_evidence(engine, store, "acme", PHOTO, kind="screen", taken_at=TAKEN)
    sha = sha256_hex(PHOTO)
    raw = bytearray(_raw(store, "acme", sha))
    raw[-100] ^= 0x01
    store.backend.put(object_key("acme", sha), bytes(raw))
    assert store.check("acme", sha) == (
        f"evidence {sha}: content hash mismatch (the ciphertext fails authentication: "
        "altered, or another object's)"
    )


def test_blob_swapped_or_moved_fails(engine: Engine, store: EvidenceStore) -> None:
    """Another object's blob under this sha, or a blob moved to another tenant, does not open."""
    other_photo = PHOTO + b"2"
    save_evidence(engine, store, "acme", PHOTO, kind="camera", taken_at=TAKEN)
    save_evidence(engine, store, "acme", other_photo, kind="camera", taken_at=TAKEN)
    sha, other_sha = sha256_hex(PHOTO), sha256_hex(other_photo)
    store.backend.put(object_key("acme", sha), _raw(store, "acme", other_sha))
    with pytest.raises(EvidenceError, match=f"^evidence {sha}: content hash mismatch"):
        store.get("acme", sha)
    store.backend.put(object_key("other", other_sha), _raw(store, "acme", other_sha))
    with pytest.raises(EvidenceError, match=f"^evidence {other_sha}: cannot be decrypted \\(data key dk-"):
        store.get("other", other_sha)


def test_missing_and_deleted(engine: Engine, store: EvidenceStore) -> None:
    """A deleted object is reported missing, with where it was expected."""
    save_evidence(engine, store, "acme", PHOTO, kind="camera", taken_at=TAKEN)
    sha = sha256_hex(PHOTO)
    assert store.exists("acme", sha)
    store.delete("acme", sha)
    store.delete("acme", sha)
    assert not store.exists("acme", sha)
    assert store.check("acme", sha) == f"evidence {sha}: missing from storage ({store.where('acme', sha)})"


def test_local_files_are_ciphertext(tmp_path: Path, engine: Engine) -> None:
    """Local evidence files live under data_dir/evidence, mode 0600 in folders 0700 all the way
    down (whatever the umask), and never hold the plaintext."""
    accounts.create_tenant(engine, "acme", "Acme")
    store = open_store(_settings(tmp_path, "local", None), engine)
    assert isinstance(store.backend, LocalBackend)
    save_evidence(engine, store, "acme", PHOTO, kind="camera", taken_at=TAKEN)
    files = [p for p in (tmp_path / "evidence").rglob("*") if p.is_file()]
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        f"evidence/{object_key('acme', sha256_hex(PHOTO))}"
    ]
    assert files[0].stat().st_mode & 0o777 == 0o600
    folders = [p for p in (tmp_path / "evidence").rglob("*") if p.is_dir()] + [tmp_path / "evidence"]
    assert {p.stat().st_mode & 0o777 for p in folders} == {0o700}
    assert PHOTO[4:64] not in files[0].read_bytes()


def test_bad_input(engine: Engine, tmp_path: Path) -> None:
    """Bad kinds, naive timestamps and malformed ids are refused with what was expected."""
    accounts.create_tenant(engine, "acme", "Acme")
    store = open_store(_settings(tmp_path, "local", None), engine)
    with pytest.raises(EvidenceError, match="expected one of camera, screen, got 'face'"):
        save_evidence(engine, store, "acme", PHOTO, kind="face", taken_at=TAKEN)
    with pytest.raises(EvidenceError, match="expected an aware timestamp"):
        save_evidence(engine, store, "acme", PHOTO, kind="camera", taken_at=TAKEN.replace(tzinfo=None))
    with pytest.raises(EvidenceError, match="expected 64 lowercase hex digits"):
        store.get("acme", "../../etc/passwd")


def test_s3_settings_errors(tmp_path: Path, engine: Engine) -> None:
    """The S3 backend without credentials stops with a ConfigError naming the variable."""
    ensure_master_key(tmp_path)
    settings = ServerSettings(data_dir=tmp_path, evidence_backend="s3")
    with pytest.raises(ConfigError, match=r"^TELEWORK_S3_ACCESS_KEY: evidence backend s3 needs"):
        open_store(settings, engine)


def test_audit_head_witness_on_each_backend(engine: Engine, store: EvidenceStore) -> None:
    """Entries appended through the store's engine are witnessed beside the evidence, on either backend."""
    hash_chain_store.record(engine, actor="admin", action="tenant.update", target="tenant:acme", at=TAKEN)
    head = hash_chain_store.current_head(engine, store.chain_guard())
    assert read_witness(store.backend, store.chain_guard().key) == head
    store.backend.delete(WITNESS_KEY)
    report = hash_chain_store.verify(engine, store)
    assert report.witness == "missing"
    assert report.problems[0].startswith(
        f"the evidence store has no audit head witness ({store.backend.where(WITNESS_KEY)})"
    )
