"""Envelope encryption, master key loading and per-tenant data keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.config import ConfigError
from core.settings import ServerSettings
from storage import accounts, crypto
from storage.evidence_models import DataKey
from storage.keyring import Keyring, ensure_master_key, load_master_key

SHA = crypto.sha256_hex(b"photo")


def test_round_trip() -> None:
    """An object encrypted under a data key decrypts to the same bytes, and is not the plaintext."""
    key = crypto.new_key()
    blob = crypto.encrypt(key, "dk-1", b"photo", crypto.evidence_aad("acme", SHA))
    assert b"photo" not in blob
    assert len(blob) == 4 + 1 + len("dk-1") + 12 + len(b"photo") + 16
    assert crypto.blob_key_id(blob) == "dk-1"
    assert crypto.decrypt(key, blob, crypto.evidence_aad("acme", SHA)) == b"photo"


def test_fresh_nonce_per_object() -> None:
    """Encrypting the same plaintext twice gives different ciphertexts (random 96-bit nonce)."""
    key = crypto.new_key()
    aad = crypto.evidence_aad("acme", SHA)
    assert crypto.encrypt(key, "dk-1", b"photo", aad) != crypto.encrypt(key, "dk-1", b"photo", aad)


def test_wrong_tenant_aad_fails() -> None:
    """A blob presented as another tenant's object does not decrypt."""
    key = crypto.new_key()
    blob = crypto.encrypt(key, "dk-1", b"photo", crypto.evidence_aad("acme", SHA))
    with pytest.raises(crypto.CryptoError, match="authentication failed"):
        crypto.decrypt(key, blob, crypto.evidence_aad("other", SHA))


def test_swapped_object_fails() -> None:
    """A blob presented under another object's sha256 does not decrypt."""
    key = crypto.new_key()
    blob = crypto.encrypt(key, "dk-1", b"photo", crypto.evidence_aad("acme", SHA))
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, blob, crypto.evidence_aad("acme", crypto.sha256_hex(b"other")))


def test_flipped_byte_fails() -> None:
    """Any altered ciphertext byte is rejected."""
    key = crypto.new_key()
    aad = crypto.evidence_aad("acme", SHA)
    blob = bytearray(crypto.encrypt(key, "dk-1", b"photo", aad))
    blob[20] ^= 0x01
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, bytes(blob), aad)


def test_wrap_unwrap_bound_to_master_and_tenant() -> None:
    """A wrapped data key opens with its master key and tenant only."""
    master, data_key = crypto.new_key(), crypto.new_key()
    wrapped = crypto.wrap_key(master, data_key, "acme", "dk-1")
    assert data_key not in wrapped
    assert crypto.unwrap_key(master, wrapped, "acme", "dk-1") == data_key
    with pytest.raises(crypto.CryptoError, match="wrong master key"):
        crypto.unwrap_key(crypto.new_key(), wrapped, "acme", "dk-1")
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(master, wrapped, "other", "dk-1")
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_key(master, wrapped, "acme", "dk-2")


def test_decode_key_errors() -> None:
    """Bad key text says what was expected and what arrived."""
    with pytest.raises(ValueError, match="expected base64 of 32 bytes, got 16 bytes"):
        crypto.decode_key(crypto.encode_key(os.urandom(16)))
    with pytest.raises(ValueError, match="not base64"):
        crypto.decode_key("not base64!!")


def test_master_key_from_setting(tmp_path: Path) -> None:
    """TELEWORK_MASTER_KEY (base64) is used first; a bad one is a ConfigError naming it."""
    key = crypto.new_key()
    settings = ServerSettings(data_dir=tmp_path, master_key=crypto.encode_key(key))
    assert load_master_key(settings) == key
    bad = ServerSettings(data_dir=tmp_path, master_key="c2hvcnQ=")
    with pytest.raises(ConfigError, match=r"^TELEWORK_MASTER_KEY: expected base64 of 32 bytes, got 5 bytes$"):
        load_master_key(bad)


def test_master_key_file(tmp_path: Path) -> None:
    """TELEWORK_MASTER_KEY_FILE is read; a missing file is a ConfigError naming the variable."""
    key = crypto.new_key()
    path = tmp_path / "k"
    path.write_text(crypto.encode_key(key) + "\n")
    assert load_master_key(ServerSettings(data_dir=tmp_path, master_key_file=path)) == key
    with pytest.raises(ConfigError, match=r"^TELEWORK_MASTER_KEY_FILE: key file .*/nope does not exist$"):
        load_master_key(ServerSettings(data_dir=tmp_path, master_key_file=tmp_path / "nope"))


def test_missing_master_key(tmp_path: Path) -> None:
    """With no key configured and no key file in data_dir, start-up stops naming the variable."""
    with pytest.raises(ConfigError, match=r"^TELEWORK_MASTER_KEY: not set"):
        load_master_key(ServerSettings(data_dir=tmp_path))


def test_ensure_master_key_creates_0600_once(tmp_path: Path) -> None:
    """ensure_master_key writes a 0600 key file once; later calls keep it; the default load reads it."""
    path = ensure_master_key(tmp_path / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert ensure_master_key(tmp_path / "data") == path
    assert path.read_text() == first
    assert load_master_key(ServerSettings(data_dir=tmp_path / "data")) == crypto.decode_key(first)


def test_keyring_creates_one_key_per_tenant(engine: Engine) -> None:
    """Data keys are created once per tenant, stored only wrapped in data_key, shared by keyrings."""
    accounts.create_tenant(engine, "acme", "Acme")
    accounts.create_tenant(engine, "other", "Other")
    master = crypto.new_key()
    first, second = Keyring(master, engine), Keyring(master, engine)
    acme_id, acme = first.active("acme")
    assert second.active("acme") == (acme_id, acme)
    assert first.active("other")[1] != acme
    with Session(engine) as s:
        rows = list(s.execute(select(DataKey).order_by(DataKey.tenant_id)).scalars())
    assert [(r.tenant_id, r.master_key_id) for r in rows] == [
        ("acme", first.master_key_id),
        ("other", first.master_key_id),
    ]
    assert acme not in rows[0].wrapped
    blob = first.seal("acme", b"photo", b"ctx")
    assert second.open("acme", blob, b"ctx") == b"photo"
    with pytest.raises(crypto.CryptoError, match=f"wrapped by master key {first.master_key_id}, but"):
        Keyring(crypto.new_key(), engine).open("acme", blob, b"ctx")
    with pytest.raises(crypto.CryptoError, match=f"data key {acme_id} of tenant 'other' does not exist"):
        first.open("other", blob, b"ctx")


def test_derived_keys_are_per_purpose() -> None:
    """HKDF gives the same 32 bytes for a master key and purpose, different ones for another of either."""
    master = crypto.new_key()
    key = crypto.derive_key(master, b"telework/audit-chain/v1")
    assert len(key) == 32 and key != master
    assert crypto.derive_key(master, b"telework/audit-chain/v1") == key
    assert crypto.derive_key(master, b"telework/other/v1") != key
    assert crypto.derive_key(crypto.new_key(), b"telework/audit-chain/v1") != key
    with pytest.raises(crypto.CryptoError, match="master key: expected 32 bytes, got 31"):
        crypto.derive_key(master[:31], b"x")
    with pytest.raises(crypto.CryptoError, match="expected a purpose label, got an empty one"):
        crypto.derive_key(master, b"")


def test_keyring_holds_the_audit_chain_key(engine: Engine) -> None:
    """A keyring exposes the key derived for the audit chain, never the master key itself."""
    master = crypto.new_key()
    ring = Keyring(master, engine)
    assert ring.audit_chain_key == crypto.derive_key(master, b"telework/audit-chain/v1") != master
