"""The master key and the tenants' data keys.

The master key (32 bytes) comes from ``TELEWORK_MASTER_KEY`` (base64), else from the file named by
``TELEWORK_MASTER_KEY_FILE``, else from ``<data_dir>/master.key`` (created with mode 0600 by
:func:`ensure_master_key`, which ``telework up`` calls in embedded mode). It never leaves the
server process and is never stored next to the data it protects, unless the embedded default is used.

Each tenant has a random 256-bit data key, stored only wrapped by the master key (AES-GCM, bound
to the tenant and key id) in the ``data_key`` table, with the master key's fingerprint.

The audit chain's HMAC key is derived from the master key (:func:`audit_chain_key`, HKDF with
the purpose ``telework/audit-chain/v1``): the database holds neither.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.config import ConfigError
from storage import crypto
from storage.evidence_models import DataKey
from storage.models import utcnow

if TYPE_CHECKING:
    from core.settings import ServerSettings

log = logging.getLogger(__name__)

MASTER_KEY_FILENAME = "master.key"
AUDIT_CHAIN_PURPOSE = b"telework/audit-chain/v1"


def audit_chain_key(master: bytes) -> bytes:
    """The key that authenticates audit entries and the chain head (HMAC-SHA256)."""
    return crypto.derive_key(master, AUDIT_CHAIN_PURPOSE)


def default_key_file(data_dir: Path) -> Path:
    return data_dir.expanduser() / MASTER_KEY_FILENAME


def ensure_master_key(data_dir: Path) -> Path:
    """Create ``<data_dir>/master.key`` (mode 0600, random key) unless it exists; returns its path."""
    path = default_key_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        read_key_file(path, "TELEWORK_MASTER_KEY_FILE")  # an existing file must hold a valid key
        return path
    with os.fdopen(fd, "w") as f:
        f.write(crypto.encode_key(crypto.new_key()) + "\n")
    log.warning(
        "created a master key file; back it up: evidence cannot be read without it",
        extra={"path": str(path)},
    )
    return path


def read_key_file(path: Path, variable: str) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(variable, f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(variable, f"key file {path} cannot be read ({exc})") from None
    try:
        key = crypto.decode_key(text)
    except ValueError as exc:
        raise ConfigError(variable, f"key file {path}: {exc}") from None
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("master key file is readable by others; chmod 600 it", extra={"path": str(path)})
    return key


def load_master_key(settings: ServerSettings) -> bytes:
    """The master key the settings point at; ConfigError naming the variable if missing or bad."""
    if settings.master_key is not None:
        try:
            return crypto.decode_key(settings.master_key.get_secret_value())
        except ValueError as exc:
            raise ConfigError("TELEWORK_MASTER_KEY", str(exc)) from None
    if settings.master_key_file is not None:
        return read_key_file(settings.master_key_file.expanduser(), "TELEWORK_MASTER_KEY_FILE")
    path = default_key_file(settings.data_dir)
    if path.is_file():
        return read_key_file(path, "TELEWORK_MASTER_KEY_FILE")
    raise ConfigError(
        "TELEWORK_MASTER_KEY",
        f"not set: set TELEWORK_MASTER_KEY (base64 of 32 bytes) or TELEWORK_MASTER_KEY_FILE, "
        f"or let `telework up` create {path}",
    )


class Keyring:
    """Tenants' data keys: created on first use, stored wrapped in ``data_key`` rows, cached unwrapped.

    Two processes creating a tenant's first key at once both succeed; every sealed blob names
    its key id, so both keys stay usable, and the oldest active one is used from then on.
    """

    def __init__(self, master: bytes, engine: Engine) -> None:
        if len(master) != crypto.KEY_BYTES:
            raise ConfigError("TELEWORK_MASTER_KEY", f"expected {crypto.KEY_BYTES} bytes, got {len(master)}")
        self._master = master
        self.master_key_id = crypto.master_key_id(master)
        self.audit_chain_key = audit_chain_key(master)
        self._engine = engine
        self._keys: dict[tuple[str, str], bytes] = {}
        self._active: dict[str, str] = {}

    def active(self, tenant: str) -> tuple[str, bytes]:
        """(key id, key) of the tenant's current data key; created if the tenant has none."""
        key_id = self._active.get(tenant)
        if key_id is None:
            key_id = self._load_active(tenant) or self._create(tenant)
            self._active[tenant] = key_id
        return key_id, self.key(tenant, key_id)

    def key(self, tenant: str, key_id: str) -> bytes:
        """The unwrapped data key ``key_id`` of ``tenant``; CryptoError if unknown or unusable."""
        cached = self._keys.get((tenant, key_id))
        if cached is not None:
            return cached
        with Session(self._engine) as s:
            row = s.get(DataKey, key_id)
        if row is None or row.tenant_id != tenant:
            raise crypto.CryptoError(f"data key {key_id} of tenant {tenant!r} does not exist")
        if row.master_key_id != self.master_key_id:
            raise crypto.CryptoError(
                f"data key {key_id} of tenant {tenant!r} is wrapped by master key {row.master_key_id}, "
                f"but the configured master key is {self.master_key_id} (was the master key changed?)"
            )
        key = crypto.unwrap_key(self._master, row.wrapped, tenant, key_id)
        self._keys[(tenant, key_id)] = key
        return key

    def seal(self, tenant: str, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt under the tenant's active data key; the blob names the key."""
        key_id, key = self.active(tenant)
        return crypto.encrypt(key, key_id, plaintext, aad)

    def open(self, tenant: str, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a sealed blob of ``tenant``; CryptoError if any byte, the key or the binding is wrong."""
        return crypto.decrypt(self.key(tenant, crypto.blob_key_id(blob)), blob, aad)

    def _load_active(self, tenant: str) -> str | None:
        with Session(self._engine) as s:
            key_id: str | None = s.execute(
                select(col(DataKey.id))
                .where(col(DataKey.tenant_id) == tenant, col(DataKey.retired_at).is_(None))
                .order_by(col(DataKey.created_at), col(DataKey.id))
                .limit(1)
            ).scalar_one_or_none()
        return key_id

    def _create(self, tenant: str) -> str:
        key_id = "dk-" + uuid.uuid4().hex
        wrapped = crypto.wrap_key(self._master, crypto.new_key(), tenant, key_id)
        with Session(self._engine) as s:
            s.add(
                DataKey(
                    id=key_id,
                    tenant_id=tenant,
                    wrapped=wrapped,
                    master_key_id=self.master_key_id,
                    created_at=utcnow(),
                )
            )
            s.commit()
        log.info("created data key", extra={"tenant": tenant, "key_id": key_id})
        return self._load_active(tenant) or key_id
