"""The ``telework`` command line. Parses arguments and calls the subsystems; no logic of its own.

Server modules are imported inside each command, so ``telework --help`` and
``telework agent`` work with only the agent's dependencies installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from core.process import run_command
from core.settings import ServerSettings, load_server_settings
from telework import cli_accounts, cli_devcert, cli_settings, cli_tasks, cli_web
from telework.cli_agent import add_parsers as add_agent_parsers
from telework.cli_base import Parser, positive_int, setup
from telework.cli_data import add_admin_parsers
from telework.cli_data import add_parsers as add_data_parsers
from telework.cli_models import add_parsers as add_models_parsers

# ----------------------------------------------------------------------- settings


def _server_settings(args: argparse.Namespace, **overrides: object) -> ServerSettings:
    return load_server_settings(data_dir=getattr(args, "data_dir", None), **overrides)


# ----------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    from telework.up import run_up

    settings = _server_settings(args)
    setup(args, settings.log_level)
    return run_up(
        settings,
        args.demo,
        args.agents,
        args.workers,
        sys.executable,
        events_per_s=args.events_per_s,
        verbose=args.verbose,
    )


def _serve(args: argparse.Namespace, target: Callable[[ServerSettings], None], **overrides: object) -> int:
    settings = _server_settings(args, **overrides)
    setup(args, settings.log_level)
    target(settings)
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from realtime.app import serve
    from telework.face_gate import gate_factory

    def run(settings: ServerSettings) -> None:
        serve(settings, gate_factory(settings))  # the agent's face gate for enrollment images

    return _serve(args, run, gateway_host=args.host, gateway_port=args.port)


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.run import run_worker

    return _serve(args, run_worker, worker_name=args.name)


def cmd_builder(args: argparse.Namespace) -> int:
    from workers.run import run_builder

    return _serve(args, run_builder)


def cmd_rollup(args: argparse.Namespace) -> int:
    from workers.rollup import run_rollups

    return _serve(args, run_rollups)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.live import serve

    return _serve(
        args, serve, dashboard_host=args.host, dashboard_port=args.port, dashboard_tenant=args.tenant
    )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage.db import make_engine, upgrade

    settings = _server_settings(args)
    setup(args, settings.log_level)
    engine = make_engine(settings.database())
    try:
        revision = upgrade(engine)
    finally:
        engine.dispose()
    print(f"database schema at revision {revision}")
    return 0


# ------------------------------------------------------------------------ parsing


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="data folder (env TELEWORK_DATA_DIR; default: user data dir)"
    )


def build_parser() -> argparse.ArgumentParser:
    root = Parser(
        prog="telework", description="Telework Supporter: agents, gateway, workers, live dashboard."
    )
    root.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (env TELEWORK_LOG_LEVEL; default INFO)",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser(
        "up",
        help="run every server process (gateway, workers, builder, rollup, retention, dashboard)",
        description="Run gateway, workers and dashboard; embedded Redis and SQLite by default.",
    )
    _data_dir(p)
    p.add_argument("--demo", action="store_true", help="create the demo tenant and run simulated agents")
    p.add_argument(
        "--agents", type=positive_int(0), default=6, help="simulated agents with --demo (default 6)"
    )
    p.add_argument("--workers", type=positive_int(1), default=2, help="worker processes (default 2)")
    p.add_argument("--events-per-s", type=float, default=1.0, help="events per second per simulated agent")
    p.add_argument("--verbose", action="store_true", help="show the full log here too")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("gateway", help="run the agent WebSocket gateway", description="Run the gateway.")
    _data_dir(p)
    p.add_argument("--host", help="listen address (env TELEWORK_GATEWAY_HOST)")
    p.add_argument("--port", type=int, help="listen port (env TELEWORK_GATEWAY_PORT)")
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser(
        "worker", help="run a stream consumer that persists events", description="Run a worker."
    )
    _data_dir(p)
    p.add_argument("--name", help="consumer name, unique per worker (env TELEWORK_WORKER_NAME)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "builder",
        help="run the stream consumer that builds intervals and incidents",
        description="Run the interval and incident builder (one per deployment).",
    )
    _data_dir(p)
    p.set_defaults(func=cmd_builder)

    p = sub.add_parser(
        "rollup",
        help="run the worker that keeps daily attendance rollups current",
        description="Run the daily-rollup worker (attendance and task analytics).",
    )
    _data_dir(p)
    p.set_defaults(func=cmd_rollup)

    p = sub.add_parser("dashboard", help="run the live dashboard", description="Run the live dashboard.")
    _data_dir(p)
    p.add_argument("--host", help="listen address (env TELEWORK_DASHBOARD_HOST)")
    p.add_argument("--port", type=int, help="listen port (env TELEWORK_DASHBOARD_PORT)")
    p.add_argument("--tenant", help="tenant shown (env TELEWORK_DASHBOARD_TENANT)")
    p.set_defaults(func=cmd_dashboard)

    db = sub.add_parser("db", help="database schema", description="Database schema commands.")
    dbs = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = dbs.add_parser(
        "upgrade", help="create or upgrade the schema", description="Bring the schema up to date."
    )
    _data_dir(p)
    p.set_defaults(func=cmd_db_upgrade)

    _admin_parsers(sub)
    add_data_parsers(sub, Parser)
    add_agent_parsers(sub)
    add_models_parsers(sub, Parser)
    cli_web.add_parsers(sub)
    cli_devcert.add_parsers(sub)
    return root


def _admin_parsers(sub: argparse._SubParsersAction[Parser]) -> None:
    admin = sub.add_parser(
        "admin",
        help="manage tenants, users, agents and settings",
        description="Manage tenants, users, agent devices and tenant settings.",
    )
    objs = admin.add_subparsers(dest="what", required=True, metavar="OBJECT", parser_class=Parser)

    cli_accounts.add_admin_parsers(objs, Parser)
    cli_settings.add_admin_parsers(objs, Parser)
    add_admin_parsers(objs, Parser)
    cli_tasks.add_admin_parsers(objs, Parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``telework`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return run_command(f"telework {args.command}", lambda: args.func(args))
