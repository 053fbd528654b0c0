"""``telework dev-cert``: a local certificate authority and a server certificate for this machine.

The folder (``<data dir>/tls`` by default, 0700) holds ``ca.key`` and ``ca.crt`` (the CA, made
once and kept), ``server.key`` (kept: the pin an agent holds survives a renewal) and
``server.crt``, signed by the CA, for ``localhost``, ``127.0.0.1``, ``::1``, the host name and any
``--name``. Every file is 0600. A run keeps what is still good and issues a new server
certificate only when there is none, it is not signed by this CA, its names differ from those
asked for, or it expires within :data:`RENEW_BEFORE`. Keys are ECDSA P-256.

Pure parts (:func:`parse_name`, :func:`wanted_names`, :func:`renewal_reason`) take values and
return values; :func:`ensure` does the files.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import OperatorError
from core.private import tighten, write_private
from core.tls import pin_of_pem

CA_KEY, CA_CERT, SERVER_KEY, SERVER_CERT = "ca.key", "ca.crt", "server.key", "server.crt"
CA_LIFE = timedelta(days=3650)
SERVER_LIFE = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)  # a certificate expiring this soon is renewed
BACKDATE = timedelta(minutes=5)  # certificates valid from a little before now (clock differences)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_NAMES = 100
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
NAME_EXPECTED = "expected a host name (letters, digits, '-', dots; '*.' first allowed) or an IP address"

Key = ec.EllipticCurvePrivateKey


class DevCertError(OperatorError):
    """A file of the folder cannot be used (the message names it and what to do)."""


def parse_name(text: str) -> str:
    """Pure: a certificate name, normalised (IP addresses compressed, host names lower case, no
    trailing dot); ValueError naming what was expected."""
    value = text.strip()
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    name = value.rstrip(".").lower()
    labels = name.split(".")
    if labels and labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{NAME_EXPECTED}, got {text!r}")
    return name


def wanted_names(hostname: str, extra: Iterable[str]) -> tuple[str, ...]:
    """Pure: loopback names, the host name (when it is a valid name), then ``extra``; no repeats."""
    names: list[str] = list(LOOPBACK_NAMES)
    with contextlib.suppress(ValueError):  # a host name a certificate cannot carry (e.g. with '_')
        names.append(parse_name(hostname))
    names.extend(parse_name(name) for name in extra)
    unique = tuple(dict.fromkeys(names))
    if len(unique) > MAX_NAMES:
        raise ValueError(f"at most {MAX_NAMES} names, got {len(unique)}")
    return unique


def renewal_reason(
    names: frozenset[str] | None,
    wanted: frozenset[str],
    not_after: datetime | None,
    signed_by_ca: bool,
    now: datetime,
) -> str | None:
    """Pure: why a new server certificate is needed (None: the present one is kept)."""
    if names is None or not_after is None:
        return "there was none"
    if not signed_by_ca:
        return "it was not signed by this CA"
    if names != wanted:
        return "its names changed"
    if not_after - now <= RENEW_BEFORE:
        return f"it expires on {not_after.date().isoformat()}"
    return None


def cert_names(cert: x509.Certificate) -> frozenset[str]:
    """The DNS names and IP addresses of a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return frozenset([*dns, *ips])


@dataclass(frozen=True)
class DevCert:
    """What :func:`ensure` left in the folder."""

    folder: Path
    names: tuple[str, ...]
    pin: str  # of server.key (TELEWORK_AGENT_TLS_PIN)
    not_after: datetime
    ca_created: bool
    issued: str | None  # why server.crt was (re)issued; None: kept

    @property
    def ca_cert(self) -> Path:
        return self.folder / CA_CERT

    @property
    def server_cert(self) -> Path:
        return self.folder / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.folder / SERVER_KEY


def _new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_key(path: Path) -> Key | None:
    """The EC key in ``path``; None when there is no file; DevCertError when it is unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DevCertError(f"{path} is not a usable key ({exc}); remove it to make a new one") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise DevCertError(f"{path} is not an ECDSA key; remove it to make a new one")
    return key


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # unreadable certificates are reissued


def _ca_certificate(key: Key, hostname: str, now: datetime) -> x509.Certificate:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"Telework Supporter dev CA ({hostname})"[:64])]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFE)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _server_certificate(
    key: Key, names: tuple[str, ...], ca_key: Key, ca: x509.Certificate, now: datetime
) -> x509.Certificate:
    public = key.public_key()
    not_after = min(now + SERVER_LIFE, ca.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ca(folder: Path, hostname: str, now: datetime) -> tuple[Key, x509.Certificate, bool]:
    """The folder's CA (key, certificate, made now?); a CA near its end is made anew."""
    key = _load_key(folder / CA_KEY)
    cert = _load_cert(folder / CA_CERT)
    if key is not None and cert is not None:
        mine = cert.public_key() == key.public_key()
        if mine and cert.not_valid_after_utc - now > RENEW_BEFORE:
            return key, cert, False
        if not mine:
            raise DevCertError(
                f"{folder / CA_CERT} is not the certificate of {folder / CA_KEY}; "
                "remove both to make a new CA"
            )
    elif cert is not None:
        raise DevCertError(f"{folder / CA_CERT} has no key {CA_KEY} beside it; remove it to make a new CA")
    key = _new_key()
    cert = _ca_certificate(key, hostname, now)
    write_private(folder / CA_KEY, _key_pem(key))
    write_private(folder / CA_CERT, _cert_pem(cert))
    return key, cert, True


def ensure(folder: Path, names: tuple[str, ...], hostname: str, now: datetime | None = None) -> DevCert:
    """The CA and the server certificate for ``names`` in ``folder``, made or renewed as needed."""
    moment = now or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tighten(folder)
    ca_key, ca, ca_created = _ca(folder, hostname, moment)
    key = _load_key(folder / SERVER_KEY)
    if key is None:
        key = _new_key()
        write_private(folder / SERVER_KEY, _key_pem(key))
    current = _load_cert(folder / SERVER_CERT)
    usable = current is not None and current.public_key() == key.public_key()
    reason = renewal_reason(
        cert_names(current) if current is not None and usable else None,
        frozenset(names),
        current.not_valid_after_utc if current is not None and usable else None,
        current is not None and _signed_by(current, ca),
        moment,
    )
    cert = current
    if reason is not None or cert is None:
        cert = _server_certificate(key, names, ca_key, ca, moment)
        write_private(folder / SERVER_CERT, _cert_pem(cert))
    pem = _cert_pem(cert)
    return DevCert(folder, names, pin_of_pem(pem), cert.not_valid_after_utc, ca_created, reason)
