"""``telework dev-cert``: a local CA and this machine's server certificate (:mod:`core.devcert`).
Wired into :mod:`telework.cli` by :func:`add_parsers`; prints where the files are and the settings."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import ConfigError
from core.settings import load_server_settings
from telework.cli_base import Parser, data_dir_option, setup

if TYPE_CHECKING:
    from core.devcert import DevCert

TLS_FOLDER = "tls"  # in the data folder


def report(result: DevCert, gateway_port: int, web_port: int) -> list[str]:
    """Pure: what ``telework dev-cert`` prints for what :func:`core.devcert.ensure` left."""
    host = next((n for n in result.names if n not in ("localhost", "127.0.0.1", "::1")), "localhost")
    issued = "kept" if result.issued is None else f"issued ({result.issued})"
    return [
        f"CA certificate: {result.ca_cert}  ({'created' if result.ca_created else 'kept'};"
        " its key ca.key stays in this folder, 0600)",
        f"certificate:    {result.server_cert}  ({issued}, valid until {result.not_after:%Y-%m-%d})",
        f"key:            {result.server_key}",
        f"names:          {', '.join(result.names)}",
        f"key pin:        {result.pin}",
        "",
        "Servers (telework up, gateway, web) serve HTTPS/WSS with:",
        f"  TELEWORK_TLS_CERT={result.server_cert}",
        f"  TELEWORK_TLS_KEY={result.server_key}",
        f"  TELEWORK_WEB_BASE_URL=https://{_url_host(host)}:{web_port}",
        "Agents (copy ca.crt to the agent's PC) connect with:",
        f"  TELEWORK_GATEWAY_URL=wss://{_url_host(host)}:{gateway_port}/v1/agent",
        f"  TELEWORK_AGENT_TLS_CA_FILE={result.ca_cert}",
        f"  TELEWORK_AGENT_TLS_PIN={result.pin}  (optional: also pins the server's key)",
    ]


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def cmd_dev_cert(args: argparse.Namespace) -> int:
    from core.devcert import ensure, wanted_names

    settings = load_server_settings(data_dir=args.data_dir)
    setup(args, settings.log_level)
    hostname = socket.gethostname()
    try:
        names = wanted_names(hostname, args.name or [])
    except ValueError as exc:
        raise ConfigError("--name", str(exc)) from None
    folder: Path = args.out.expanduser().absolute() if args.out else settings.data_dir / TLS_FOLDER
    result = ensure(folder, names, hostname)
    print("\n".join(report(result, settings.gateway_port, settings.web_port)))
    return 0


def add_parsers(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "dev-cert",
        help="make a local CA and a TLS certificate for this machine (HTTPS/WSS)",
        description=(
            "Make (once) a local certificate authority and a server certificate signed by it for "
            "localhost, 127.0.0.1, ::1 and this host's name; a second run keeps them, renewing the "
            "certificate near its expiry or when the names change. Prints the settings to use."
        ),
    )
    data_dir_option(p)
    p.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="another host name or IP address the certificate is for (repeatable)",
    )
    p.add_argument("--out", type=Path, help="folder of the files (default: <data dir>/tls)")
    p.set_defaults(func=cmd_dev_cert)
