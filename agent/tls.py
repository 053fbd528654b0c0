"""How the agent reaches its gateway safely: no plain ``ws://`` off this machine, the server's
certificate verified, and optionally its key pinned.

- ``ws://`` to anything but loopback is refused unless ``TELEWORK_AGENT_ALLOW_INSECURE`` is set
  (development only): the agent's token and its users' events would cross the network in clear;
- ``wss://`` verifies the gateway's certificate and host name against the system's trust store,
  or only against ``TELEWORK_AGENT_TLS_CA_FILE`` when set (e.g. ``telework dev-cert``'s ``ca.crt``);
- ``TELEWORK_AGENT_TLS_PIN`` (one or more ``sha256/...`` pins, comma-separated) also requires the
  certificate's public key to be one of them: checked right after the TLS handshake, before the
  agent sends its token. A mismatch refuses the connection with :class:`CertificateRefused`
  (the session retries after its backoff, logging the reason each time).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.config import ConfigError
from core.tls import PinError, format_pin, is_loopback, parse_pins, spki_digest, url_host

GATEWAY_URL_KEY = "TELEWORK_GATEWAY_URL"
CA_FILE_KEY = "TELEWORK_AGENT_TLS_CA_FILE"
PIN_KEY = "TELEWORK_AGENT_TLS_PIN"
INSECURE_KEY = "TELEWORK_AGENT_ALLOW_INSECURE"


class CertificateRefused(OSError):
    """The gateway's certificate is not the pinned one (an OSError: the session retries later)."""


class _Transport(Protocol):
    def get_extra_info(self, name: str, default: object = None) -> object: ...


def insecure_refusal(url: str, allow_insecure: bool) -> str | None:
    """Pure: why ``url`` may not be used (plain ws:// off this machine), or None when it may."""
    if not url.lower().startswith("ws://") or allow_insecure:
        return None
    host = url_host(url)
    if is_loopback(host):
        return None
    return (
        f"refusing unencrypted ws:// to {host or url!r} (not this machine): use wss:// "
        f"(or {INSECURE_KEY}=1 for development only)"
    )


def pin_refusal(cert_der: bytes | None, pins: tuple[bytes, ...]) -> str | None:
    """Pure: why the gateway's certificate (DER) fails the pins, or None when it passes (or no pins)."""
    if not pins:
        return None
    if cert_der is None:
        return "the gateway sent no certificate to check against " + PIN_KEY
    got = spki_digest(cert_der)
    if got in pins:
        return None
    return f"the gateway's certificate key is {format_pin(got)}, which is not a pin of {PIN_KEY}"


@dataclass(frozen=True)
class AgentTls:
    """The agent's TLS rules for its gateway connection; built once by :func:`agent_tls`."""

    allow_insecure: bool = False
    ca_file: Path | None = None
    pins: tuple[bytes, ...] = ()
    context: ssl.SSLContext | None = None  # wss:// context; None: the system's trust store

    def refusal(self, url: str) -> str | None:
        """Why the session may not connect to ``url`` at all (None: it may)."""
        return insecure_refusal(url, self.allow_insecure)

    def ssl_for(self, url: str) -> ssl.SSLContext | None:
        """What ``websockets.connect(ssl=...)`` takes: a verifying context for wss://, None for ws://."""
        if not url.lower().startswith("wss://"):
            return None
        return self.context if self.context is not None else client_context(None)

    def check_peer(self, transport: _Transport) -> None:
        """After the handshake, before the token is sent: CertificateRefused when no pin matches."""
        if not self.pins:
            return
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if isinstance(ssl_object, ssl.SSLObject) else None
        reason = pin_refusal(der, self.pins)
        if reason is not None:
            raise CertificateRefused(reason)


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context (TLS 1.2 at least): ``ca_file`` only, or the system's trust store."""
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            CA_FILE_KEY, f"cannot read CA certificates from {str(ca_file)!r}: {reason}"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def agent_tls(gateway_url: str, allow_insecure: bool, ca_file: Path | None, pins: str) -> AgentTls:
    """The rules for ``gateway_url``; ConfigError naming the setting that cannot be used."""
    reason = insecure_refusal(gateway_url, allow_insecure)
    if reason is not None:
        raise ConfigError(GATEWAY_URL_KEY, reason)
    try:
        digests = parse_pins(pins)
    except PinError as exc:
        raise ConfigError(PIN_KEY, str(exc)) from None
    secure = gateway_url.lower().startswith("wss://")
    if not secure and (digests or ca_file is not None):
        what = PIN_KEY if digests else CA_FILE_KEY
        raise ConfigError(what, f"needs a wss:// {GATEWAY_URL_KEY}, got {gateway_url!r}")
    context = client_context(ca_file) if secure else None
    return AgentTls(allow_insecure, ca_file, digests, context)


def describe(exc: BaseException) -> str:
    """Pure: a connection failure as one line; a refused certificate says which setting to look at."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"{text} (the gateway's certificate is not trusted: set {CA_FILE_KEY} to the CA that signed it)"
        )
    return text


class _TlsSettings(Protocol):
    @property
    def gateway_url(self) -> str: ...
    @property
    def agent_allow_insecure(self) -> bool: ...
    @property
    def agent_tls_ca_file(self) -> Path | None: ...
    @property
    def agent_tls_pin(self) -> str: ...


def tls_of(config: _TlsSettings) -> AgentTls:
    """The TLS rules of an agent's settings (:class:`agent.config.AgentConfig`); ConfigError if unusable."""
    ca_file = None if config.agent_tls_ca_file is None else config.agent_tls_ca_file.expanduser()
    return agent_tls(config.gateway_url, config.agent_allow_insecure, ca_file, config.agent_tls_pin)
