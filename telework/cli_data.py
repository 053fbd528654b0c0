"""``telework audit verify``, ``telework retention``, ``telework admin export-user | erase-user``.

Wired into :mod:`telework.cli` by :func:`add_parsers` (top-level commands) and
:func:`add_admin_parsers` (under ``admin``). Errors an operator can act on are one line on
stderr and exit code 2; ``audit verify`` exits 1 when it finds tampering.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import USAGE_ERROR
from core.settings import ServerSettings, load_server_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from realtime.erase import RedisErasure
    from storage.evidence_store import EvidenceStore

TAMPERED = 1
REDIS_TIMEOUT_S = 5.0


def _settings(args: argparse.Namespace) -> ServerSettings:
    from core.logs import setup_logging

    settings = load_server_settings(data_dir=getattr(args, "data_dir", None))
    setup_logging(getattr(args, "log_level", None) or "WARNING")
    return settings


@contextmanager
def _engine(settings: ServerSettings) -> Iterator[Engine]:
    from storage.db import open_database

    engine = open_database(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def _store(settings: ServerSettings, engine: Engine) -> EvidenceStore:
    from storage.evidence_store import open_store

    return open_store(settings, engine)


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or f"cli:{getpass.getuser()}")


# ----------------------------------------------------------------------- commands


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from storage.hash_chain_store import verify

    settings = _settings(args)
    with _engine(settings) as engine:
        store = None if args.no_evidence else _store(settings, engine)
        report = verify(engine, store, tenant=args.tenant)
    for problem in report.problems:
        print(problem)
    evidence = "not checked" if args.no_evidence else f"{report.evidence} object(s) checked"
    print(
        f"audit log: {report.entries} entries, head {report.head}; evidence: {evidence}; "
        f"{len(report.problems)} problem(s)"
    )
    return 0 if report.ok else TAMPERED


def cmd_export_user(args: argparse.Namespace) -> int:
    from storage.personal_data import export_user

    out = args.out or Path(f"{args.tenant}-{args.login}-export.zip")
    settings = _settings(args)
    with _engine(settings) as engine:
        path = export_user(engine, _store(settings, engine), args.tenant, args.login, out, actor=_actor(args))
    print(f"user {args.login} of tenant {args.tenant} exported to {path}")
    return 0


def _redis_for_erasure(settings: ServerSettings) -> str | None:
    """The Redis to erase from, checked before anything is erased; None: none configured or running.

    Configured but unreachable is an OperatorError: nothing is erased, the command can be rerun.
    """
    import redis
    from redis.exceptions import RedisError

    from core.errors import OperatorError
    from core.process import redis_url

    try:
        url = redis_url(settings, "erase-user, to remove the user's events from Redis,")
    except OperatorError:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise OperatorError(
            f"Redis at {url} cannot be reached ({type(exc).__name__}: {exc}); erase-user removes the "
            "user's events from Redis as well: nothing was erased, run it again once Redis is up"
        ) from None
    finally:
        client.close()
    return url


def _erase_from_redis(url: str, tenant: str, agents: tuple[str, ...]) -> RedisErasure:
    """:func:`realtime.erase.erase_agents`; a Redis failure is one OperatorError saying what stays."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from core.errors import OperatorError
    from realtime.erase import erase_agents

    async def erase() -> RedisErasure:
        client = aioredis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S)
        try:
            return await erase_agents(client, tenant, agents, datetime.now(UTC))
        finally:
            await client.aclose()

    try:
        return asyncio.run(erase())
    except (RedisError, OSError) as exc:
        raise OperatorError(
            f"the user was erased from the database, but removing the events of agents "
            f"{', '.join(agents)} from Redis failed ({type(exc).__name__}: {exc}); they leave the event "
            "stream TELEWORK_STREAM_KEEP_S after they are stored and the dead letters after "
            "TELEWORK_DEAD_LETTER_KEEP_DAYS"
        ) from None


def cmd_erase_user(args: argparse.Namespace) -> int:
    from storage import hash_chain_store
    from storage.personal_data import erase_user, find_subject

    if not args.yes:
        print(
            f"telework {args.command}: error: erasing user {args.login} of tenant {args.tenant} cannot be "
            "undone; add --yes to confirm",
            file=sys.stderr,
        )
        return USAGE_ERROR
    settings = _settings(args)
    url = _redis_for_erasure(settings)
    with _engine(settings) as engine:
        subject = find_subject(engine, args.tenant, args.login)  # its agents, before they are unlinked
        counts = erase_user(engine, _store(settings, engine), args.tenant, args.login, actor=_actor(args))
        removed = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        print(f"user {args.login} of tenant {args.tenant} erased ({removed})")
        if url is None:
            print(
                f"telework {args.command}: warning: no Redis configured and no `telework up` running: "
                "the user's events, dead letters and live states in Redis were not removed",
                file=sys.stderr,
            )
            return 0
        erased = _erase_from_redis(url, args.tenant, subject.agents)
        hash_chain_store.record(
            engine,
            actor=_actor(args),
            action="user.erase.redis",
            target=f"user:{subject.user_id}",
            tenant_id=args.tenant,
            detail=erased.counts(),
        )
    print(
        f"removed from Redis: {erased.events} event(s), {erased.dead_letters} dead letter(s), "
        f"{erased.live_states} live state(s)"
    )
    return 0


def cmd_retention_once(args: argparse.Namespace) -> int:
    from workers.retention import RetentionPolicy
    from workers.retention_store import run_once

    settings = _settings(args)
    with _engine(settings) as engine:
        report = run_once(
            engine,
            _store(settings, engine),
            args.now or datetime.now().astimezone(),
            RetentionPolicy.from_settings(settings),
        )
    print(json.dumps(report.summary()))
    return 0


def cmd_retention_run(args: argparse.Namespace) -> int:
    from core.logs import setup_logging
    from workers.retention_store import serve_retention

    settings = load_server_settings(data_dir=args.data_dir)
    setup_logging(args.log_level or settings.log_level)
    serve_retention(settings)
    return 0


# ------------------------------------------------------------------------ parsing


def _aware(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected a time with a UTC offset, got {text!r}")
    return moment


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="data folder (env TELEWORK_DATA_DIR; default: user data dir)"
    )


def add_parsers(sub: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``audit verify`` and ``retention once | run`` on the root sub-parsers."""
    audit = sub.add_parser(
        "audit", help="tamper evidence", description="Check the audit log and the evidence."
    )
    acts = audit.add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND", parser_class=parser_class
    )
    p = acts.add_parser(
        "verify",
        help="check the audit hash chain and every evidence object's hash",
        description="Walk the audit log's hash chain and decrypt every evidence object; each altered "
        "entry or object is named on its own line. Exit 0: intact, 1: tampering found.",
    )
    _data_dir(p)
    p.add_argument("--tenant", help="check only this tenant's evidence (the chain is always checked whole)")
    p.add_argument("--no-evidence", action="store_true", help="check the audit chain only")
    p.set_defaults(func=cmd_audit_verify)

    ret = sub.add_parser("retention", help="data retention", description="Delete data past its retention.")
    rs = ret.add_subparsers(
        dest="retention_command", required=True, metavar="COMMAND", parser_class=parser_class
    )
    p = rs.add_parser(
        "once",
        help="run one retention pass now and print what it deleted",
        description="Delete events, intervals, incidents and evidence older than TELEWORK_RETENTION_DAYS "
        "(legal holds excepted) and terminated tenants' face data; prints a JSON summary.",
    )
    _data_dir(p)
    p.add_argument("--now", type=_aware, help="pretend it is this time (ISO 8601 with offset)")
    p.set_defaults(func=cmd_retention_once)
    p = rs.add_parser(
        "run",
        help="run the retention job every TELEWORK_RETENTION_INTERVAL_S until stopped",
        description="Run a retention pass now and then every TELEWORK_RETENTION_INTERVAL_S seconds.",
    )
    _data_dir(p)
    p.set_defaults(func=cmd_retention_run)


def add_admin_parsers(
    objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    """Register ``admin export-user`` and ``admin erase-user`` on the ``admin`` sub-parsers."""
    del parser_class  # leaf commands: no sub-parsers of their own
    p = objs.add_parser(
        "export-user",
        help="export everything stored about a user (zip: JSON + images)",
        description="Write a zip with person.json (every row about the user) and their decrypted images.",
    )
    _data_dir(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.add_argument("login", help="the user's login")
    p.add_argument("--out", type=Path, help="zip to write (default TENANT-LOGIN-export.zip), mode 0600")
    p.add_argument("--actor", help="who asks, for the audit log (default cli:<os user>)")
    p.set_defaults(func=cmd_export_user)
    p = objs.add_parser(
        "erase-user",
        help="erase a user and all their data (audited; refused under legal hold)",
        description="Delete the user, their events, intervals, incidents, evidence and face data; then, "
        "in Redis, their agents' stream entries, dead letters and live states.",
    )
    _data_dir(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.add_argument("login", help="the user's login")
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    p.add_argument("--actor", help="who asks, for the audit log (default cli:<os user>)")
    p.set_defaults(func=cmd_erase_user)
