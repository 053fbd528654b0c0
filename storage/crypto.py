"""Envelope encryption: AES-256-GCM objects under a per-tenant data key wrapped by a master key.

Pure functions over bytes; no I/O. Formats (versioned by their first bytes):

- wrapped data key: ``b"TWK1" + nonce(12) + AESGCM(master).encrypt(data_key, aad)``, the aad naming
  the tenant and the key id (``telework/data-key/v1/<tenant>/<key id>``);
- sealed object: ``b"TWE1" + len(key id)(1) + key id + nonce(12) + AESGCM(data_key).encrypt(plaintext,
  aad)``. The key id says which data key opens it (keys can be rotated); for evidence the aad
  binds the tenant and the sha256 of the plaintext (:func:`evidence_aad`), so a blob moved to
  another tenant, or swapped for another object's blob, fails to decrypt.

Keys for other purposes (the audit chain's HMAC key) are derived from the master key with HKDF
(:func:`derive_key`), never stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import OperatorError

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit GCM nonce, random per object
TAG_BYTES = 16
KEY_MAGIC = b"TWK1"
OBJECT_MAGIC = b"TWE1"


class CryptoError(OperatorError, ValueError):
    """Ciphertext that cannot be opened: wrong key, wrong tenant / hash binding, or altered bytes."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_key() -> bytes:
    """A fresh random 256-bit key (data key or master key)."""
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """Base64 text of a key, as ``TELEWORK_MASTER_KEY`` and key files hold it."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """Parse base64 text of a 32-byte key; raises ValueError saying what arrived."""
    stripped = text.strip()
    try:
        key = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"expected base64 of {KEY_BYTES} bytes, got text that is not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"expected base64 of {KEY_BYTES} bytes, got {len(key)} bytes")
    return key


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_BYTES:
        raise CryptoError(f"{what}: expected {KEY_BYTES} bytes, got {len(key)}")


def _data_key_aad(tenant: str, key_id: str) -> bytes:
    return b"telework/data-key/v1/" + tenant.encode() + b"/" + key_id.encode()


def evidence_aad(tenant: str, sha256: str) -> bytes:
    """Associated data of an evidence object: its tenant and the sha256 of its plaintext."""
    return b"telework/evidence/v1/" + tenant.encode() + b"/" + sha256.encode()


def master_key_id(master: bytes) -> str:
    """A public fingerprint of the master key (recorded with each wrapped data key)."""
    return hashlib.sha256(b"telework/master-key-id/v1/" + master).hexdigest()[:16]


def derive_key(master: bytes, purpose: bytes) -> bytes:
    """A 256-bit key for one ``purpose`` derived from the master key (HKDF-SHA256, no salt).

    Keys for different purposes are independent: knowing one says nothing about the master
    key or the others.
    """
    _check_key(master, "master key")
    if not purpose:
        raise CryptoError("derive_key: expected a purpose label, got an empty one")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(master)


def wrap_key(master: bytes, data_key: bytes, tenant: str, key_id: str) -> bytes:
    """Encrypt a tenant's data key under the master key (bound to the tenant and key id)."""
    _check_key(master, "master key")
    _check_key(data_key, "data key")
    nonce = os.urandom(NONCE_BYTES)
    return KEY_MAGIC + nonce + AESGCM(master).encrypt(nonce, data_key, _data_key_aad(tenant, key_id))


def unwrap_key(master: bytes, wrapped: bytes, tenant: str, key_id: str) -> bytes:
    """Open a wrapped data key; CryptoError if the master key or tenant does not match."""
    _check_key(master, "master key")
    if not wrapped.startswith(KEY_MAGIC) or len(wrapped) != 4 + NONCE_BYTES + KEY_BYTES + TAG_BYTES:
        raise CryptoError(f"data key {key_id} of tenant {tenant!r}: not a wrapped key ({len(wrapped)} bytes)")
    nonce = wrapped[4 : 4 + NONCE_BYTES]
    try:
        return AESGCM(master).decrypt(nonce, wrapped[4 + NONCE_BYTES :], _data_key_aad(tenant, key_id))
    except InvalidTag:
        raise CryptoError(
            f"data key {key_id} of tenant {tenant!r}: cannot be unwrapped (wrong master key, or altered)"
        ) from None


def encrypt(data_key: bytes, key_id: str, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a random nonce; the result carries the key id and the nonce."""
    _check_key(data_key, "data key")
    kid = key_id.encode("ascii")
    if not 0 < len(kid) < 256:
        raise CryptoError(f"key id: expected 1-255 ASCII characters, got {len(kid)}")
    nonce = os.urandom(NONCE_BYTES)
    return OBJECT_MAGIC + bytes([len(kid)]) + kid + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def _split(blob: bytes) -> tuple[str, bytes, bytes]:
    if not blob.startswith(OBJECT_MAGIC) or len(blob) < 5:
        raise CryptoError(f"not an encrypted object (header {blob[:4]!r}, {len(blob)} bytes)")
    end = 5 + blob[4]
    if len(blob) < end + NONCE_BYTES + TAG_BYTES:
        raise CryptoError(f"encrypted object truncated ({len(blob)} bytes)")
    try:
        key_id = blob[5:end].decode("ascii")
    except UnicodeDecodeError:
        raise CryptoError("encrypted object: key id is not ASCII") from None
    return key_id, blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :]


def blob_key_id(blob: bytes) -> str:
    """The id of the data key that sealed ``blob``; CryptoError if it is not a sealed object."""
    return _split(blob)[0]


def decrypt(data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Open :func:`encrypt` output; CryptoError if the key, the binding or any byte is wrong."""
    _check_key(data_key, "data key")
    _key_id, nonce, sealed = _split(blob)
    try:
        return AESGCM(data_key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise CryptoError("authentication failed (wrong key or tenant, or altered bytes)") from None
