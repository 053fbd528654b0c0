"""``telework up`` over TLS (``TELEWORK_TLS_CERT``/``TELEWORK_TLS_KEY`` set): the children serve
HTTPS/WSS, the URLs it prints and hands on say ``https``/``wss``, and its demo agents trust the CA
``telework dev-cert`` wrote beside the certificate. Pure helpers; :mod:`telework.up` uses them."""

from __future__ import annotations

import ssl
from pathlib import Path

from core.devcert import CA_CERT

CA_FILE_KEY = "TELEWORK_AGENT_TLS_CA_FILE"


def dev_ca_beside(cert: Path | None) -> Path | None:
    """The dev-cert CA certificate in the certificate's folder, when there is one."""
    if cert is None:
        return None
    ca = cert.parent / CA_CERT
    return ca if ca.is_file() else None


def agent_env(ca_file: Path | None) -> dict[str, str]:
    """Pure: what `up`'s own agents add to their environment to trust the gateway's certificate."""
    return {} if ca_file is None else {CA_FILE_KEY: str(ca_file)}


def readiness_context(tls: bool) -> ssl.SSLContext | None:
    """For `up`'s readiness probe of its own children on this machine only: TLS without checking
    the certificate (a public certificate is not issued for 127.0.0.1); None over plain HTTP."""
    if not tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
