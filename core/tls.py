"""TLS shared by the servers and the agent: certificate-key pins, loopback addresses, the server context.

- A **pin** is the sha256 of a certificate's public key (its DER SubjectPublicKeyInfo), written
  ``sha256/<base64>`` (as curl's ``--pinnedpubkey`` and HPKP write it) or as 64 hex digits (colons
  allowed). The key, not the certificate, is pinned, so a renewed certificate with the same key
  (``telework dev-cert`` keeps it) keeps its pin.
- :func:`is_loopback` says whether a URL's host never leaves the machine (``localhost``,
  127.0.0.0/8, ``::1``): the only place an agent may speak unencrypted ``ws://`` by default.
- :func:`server_context` reads ``TELEWORK_TLS_CERT`` and ``TELEWORK_TLS_KEY`` once, at start-up:
  a missing file, a file that is no PEM certificate or key, or a key of another certificate is a
  :class:`~core.config.ConfigError` naming the setting, one line before anything listens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from core.config import ConfigError

log = logging.getLogger(__name__)

CERT_KEY = "TELEWORK_TLS_CERT"
KEY_KEY = "TELEWORK_TLS_KEY"
PIN_PREFIX = "sha256/"
PIN_EXPECTED = "expected sha256/<base64 of 32 bytes> or 64 hex digits (telework dev-cert prints it)"
B64_LEN = 44  # base64 of a 32-byte digest
MAX_PINS = 16  # pins accepted at once (the current key and its successors during a rotation)
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class PinError(ValueError):
    """A pin that is not a sha256 digest in one of the accepted forms."""


def parse_pin(text: str) -> bytes:
    """Pure: the 32-byte digest of one pin (``sha256/<base64>``, ``sha256//<base64>`` or hex)."""
    value = text.strip()
    if value.lower().startswith(PIN_PREFIX):
        encoded = value[len(PIN_PREFIX) :]
        if len(encoded) == B64_LEN + 1 and encoded.startswith("/"):
            encoded = encoded[1:]  # curl's sha256//<base64> (base64 itself may start with '/')
        if not encoded.isascii():
            raise PinError(f"{PIN_EXPECTED}, got {text!r}")
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise PinError(f"{PIN_EXPECTED}, got {text!r}") from None
    else:
        hexed = value.replace(":", "")
        if not _HEX.match(hexed):
            raise PinError(f"{PIN_EXPECTED}, got {text!r}")
        digest = bytes.fromhex(hexed)
    if len(digest) != 32:
        raise PinError(f"{PIN_EXPECTED}, got {len(digest)} bytes in {text!r}")
    return digest


def parse_pins(text: str) -> tuple[bytes, ...]:
    """Pure: the digests of a comma-separated list of pins ("": none)."""
    parts = [p for p in (part.strip() for part in text.split(",")) if p]
    if len(parts) > MAX_PINS:
        raise PinError(f"at most {MAX_PINS} pins, got {len(parts)}")
    return tuple(parse_pin(p) for p in parts)


def format_pin(digest: bytes) -> str:
    """Pure: ``sha256/<base64>`` of a 32-byte digest (what :func:`parse_pin` reads back)."""
    return PIN_PREFIX + base64.b64encode(digest).decode("ascii")


def spki_digest(cert_der: bytes) -> bytes:
    """Pure: sha256 of the DER SubjectPublicKeyInfo of a DER certificate (ValueError if not one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def pin_of_pem(pem: bytes) -> str:
    """Pure: the pin of the first certificate of a PEM file's content."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pem)
    return format_pin(spki_digest(cert.public_bytes(serialization.Encoding.DER)))


def is_loopback(host: str) -> bool:
    """Pure: ``host`` (a URL's host, brackets allowed) is this machine only: localhost, 127/8, ::1."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":  # not *.localhost: a resolver may send those names to DNS
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def url_host(url: str) -> str:
    """Pure: the host of a URL ("" when it has none)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


# ------------------------------------------------------------------ server side


def _read(path: Path, key: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}") from None


def check_pair(cert: Path, key: Path, now: datetime | None = None) -> str:
    """The files name a PEM certificate and its unencrypted PEM private key; returns the key's pin.

    ConfigError naming ``TELEWORK_TLS_CERT`` or ``TELEWORK_TLS_KEY`` otherwise. An expired
    certificate (or one not yet valid) is logged as a warning: clients will refuse it.
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    cert_pem = _read(cert, CERT_KEY, "certificate")
    key_pem = _read(key, KEY_KEY, "private key")
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise ConfigError(CERT_KEY, f"{str(cert)!r} holds no PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(KEY_KEY, f"{str(key)!r} is encrypted; give an unencrypted key (0600)") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(KEY_KEY, f"{str(key)!r} holds no usable PEM private key ({exc})") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise ConfigError(KEY_KEY, f"{str(key)!r} is not the key of the certificate {str(cert)!r}")
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        log.warning(
            "the TLS certificate is not valid now; clients will refuse it (renew: telework dev-cert)",
            extra={"cert": str(cert), "not_after": certificate.not_valid_after_utc.isoformat()},
        )
    return format_pin(spki_digest(certificate.public_bytes(der)))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The TLS context a server listens with (TLS 1.2 at least), the pair checked first."""
    check_pair(cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(CERT_KEY, f"cannot use {str(cert)!r} with {str(key)!r}: {exc}") from None
    return context
