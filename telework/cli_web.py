"""``telework web``: the web console (pages, REST API under /api/v1). Wired into :mod:`telework.cli`
by :func:`add_parsers`; the server modules are imported only when the command runs."""

from __future__ import annotations

import argparse

from core.settings import load_server_settings
from telework.cli_base import Parser, data_dir_option, setup


def cmd_web(args: argparse.Namespace) -> int:
    from telework.face_gate import gate_factory
    from web.serve import serve

    settings = load_server_settings(data_dir=args.data_dir, web_host=args.host, web_port=args.port)
    setup(args, settings.log_level)
    serve(settings, face_gate=gate_factory(settings))  # the agent's face gate for uploads
    return 0


def add_parsers(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "web",
        help="run the web console (sign-in, users, profile; REST API under /api/v1)",
        description="Run the web console: pages and the REST API under /api/v1, behind one sign-in.",
    )
    data_dir_option(p)
    p.add_argument("--host", help="listen address (env TELEWORK_WEB_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (env TELEWORK_WEB_PORT; default 8702)")
    p.set_defaults(func=cmd_web)
