"""Where encrypted blobs live: a local folder (default) or an S3-compatible bucket (MinIO, AWS).

Backends move opaque bytes by key (``evidence/<tenant>/ab/ab12...``); they never see plaintext
(evidence is encrypted before it reaches them). :func:`make_backend` picks one from the settings.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.config import ConfigError

if TYPE_CHECKING:
    from core.settings import ServerSettings

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"^[a-z0-9_.-]+(/[a-z0-9_.-]+)*$")


class BlobMissing(LookupError):
    """No blob is stored under the key."""


class Backend(Protocol):
    def put(self, key: str, blob: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def where(self, key: str) -> str: ...


def check_key(key: str) -> str:
    if not KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"blob key: expected lowercase path segments, got {key!r}")
    return key


class LocalBackend:
    """Files under ``root`` (mode 0600), written atomically (temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def where(self, key: str) -> str:
        return str(self._path(key))

    def _folders(self, folder: Path) -> None:
        """``folder`` and every missing folder between it and the root (the root too), each made 0700
        (``mkdir``'s ``parents=True`` would make the intermediate ones with the umask's mode)."""
        missing = []
        while folder != self.root and folder.parent != folder and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for made in reversed(missing):
            made.mkdir(mode=0o700, exist_ok=True)

    def _temp(self, path: Path, blob: bytes) -> str:
        """Write ``blob`` to a 0600 temp file beside ``path``; returns the temp file's name."""
        self._folders(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def put(self, key: str, blob: bytes) -> None:
        path = self._path(key)
        os.replace(self._temp(path, blob), path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(f"no blob at {self.where(key)}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Backend:
    """Objects in one bucket of an S3-compatible service, through a boto3 client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
            log.info("created bucket", extra={"bucket": self.bucket})

    def put(self, key: str, blob: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=blob)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
            return body
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise BlobMissing(f"no blob at {self.where(key)}") from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=check_key(key))
            return True
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def evidence_root(settings: ServerSettings) -> Path:
    return (settings.evidence_dir or settings.data_dir / "evidence").expanduser()


def make_backend(settings: ServerSettings) -> Backend:
    """The backend the settings select; ConfigError naming the variable when it cannot be built."""
    if settings.evidence_backend == "local":
        return LocalBackend(evidence_root(settings))
    if not settings.s3_access_key or settings.s3_secret_key is None:
        raise ConfigError(
            "TELEWORK_S3_ACCESS_KEY",
            "evidence backend s3 needs TELEWORK_S3_ACCESS_KEY and TELEWORK_S3_SECRET_KEY",
        )
    try:
        import boto3
    except ImportError:
        raise ConfigError(
            "TELEWORK_EVIDENCE_BACKEND", "s3 needs the boto3 package (pip install boto3)"
        ) from None
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        region_name=settings.s3_region,
    )
    backend = S3Backend(client, settings.s3_bucket)
    backend.ensure_bucket()
    return backend
