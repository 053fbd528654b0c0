"""``telework audit verify | head``, ``telework retention``, ``telework admin export-user | erase-user``.

Wired into :mod:`telework.cli` by :func:`add_parsers` (top-level commands) and
:func:`add_admin_parsers` (under ``admin``). Errors an operator can act on are one line on
stderr and exit code 2; ``audit verify`` exits 1 when it finds tampering.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import USAGE_ERROR
from core.settings import ServerSettings, load_server_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from storage.evidence_store import EvidenceStore
    from storage.hash_chain import Head

TAMPERED = 1


def _settings(args: argparse.Namespace) -> ServerSettings:
    from core.logs import setup_logging

    settings = load_server_settings(data_dir=getattr(args, "data_dir", None))
    setup_logging(getattr(args, "log_level", None) or "WARNING")
    return settings


@contextmanager
def _engine(settings: ServerSettings) -> Iterator[Engine]:
    from storage.audit_witness import protect_with_settings
    from storage.db import open_database

    engine = open_database(settings)
    protect_with_settings(engine, settings)  # audit appends MAC'd and witnessed (key read at the first)
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
    from storage.audit_witness import configured_guard
    from storage.hash_chain_store import verify

    settings = _settings(args)
    with _engine(settings) as engine:
        if args.tenant is not None:  # an unknown tenant is an error, not "0 problems"
            from sqlmodel import Session

            from storage.accounts import get_tenant

            with Session(engine) as s:
                get_tenant(s, args.tenant)
        store = None if args.no_evidence else _store(settings, engine)
        guard = store.chain_guard() if store is not None else configured_guard(settings)
        report = verify(engine, store, tenant=args.tenant, guard=guard, head=args.head)
    for problem in report.problems:
        print(problem)
    evidence = "not checked" if args.no_evidence else f"{report.evidence} object(s) checked"
    print(
        f"audit log: {report.entries} entries, head {report.head}, witness {report.witness}; "
        f"evidence: {evidence}; {len(report.problems)} problem(s)"
    )
    return 0 if report.ok else TAMPERED


def cmd_audit_head(args: argparse.Namespace) -> int:
    from storage.audit_witness import guard_from_settings
    from storage.hash_chain_store import current_head

    settings = _settings(args)
    with _engine(settings) as engine:
        head = current_head(engine, guard_from_settings(settings, create_key=False))
    print(head)
    return 0


def cmd_export_user(args: argparse.Namespace) -> int:
    from storage.personal_data import export_user, find_subject
    from telework.erase_user import redis_data, redis_in_use

    out = args.out or Path(re.sub(r"[^A-Za-z0-9._-]", "_", f"{args.tenant}-{args.login}-export.zip"))
    settings = _settings(args)
    url = redis_in_use(settings, "export-user includes what Redis holds about the user", "exported")
    with _engine(settings) as engine:
        agents = find_subject(engine, args.tenant, args.login).agents
        held = None if url is None else redis_data(url, args.tenant, agents)
        path = export_user(
            engine, _store(settings, engine), args.tenant, args.login, out, actor=_actor(args), redis=held
        )
    print(f"user {args.login} of tenant {args.tenant} exported to {path}")
    if url is None:
        print(
            f"telework {args.command}: warning: no Redis configured and no `telework up` running: what Redis "
            "holds about the user (dead letters, live states, entries not yet stored) is not in the export",
            file=sys.stderr,
        )
    return 0


def cmd_erase_user(args: argparse.Namespace) -> int:
    from storage.models import Tenant
    from storage.personal_data import PersonalDataError
    from telework.erase_user import describe, erase, redis_in_use, resume

    if not args.yes:
        print(
            f"telework {args.command}: error: erasing user {args.login} of tenant {args.tenant} cannot be "
            "undone; add --yes to confirm",
            file=sys.stderr,
        )
        return USAGE_ERROR
    settings = _settings(args)
    url = redis_in_use(settings, "erase-user removes the user's events from Redis as well", "erased")
    actor = _actor(args)
    with _engine(settings) as engine:
        from sqlmodel import Session

        with Session(engine) as s:
            if s.get(Tenant, args.tenant) is None:
                raise PersonalDataError(f"tenant {args.tenant!r} does not exist")
        store = _store(settings, engine)
        earlier = resume(settings, engine, store, args.tenant, url, actor)
        for report in earlier:
            if report.warnings:
                print(f"telework {args.command}: warning: {'; '.join(report.warnings)}", file=sys.stderr)
                continue
            print(f"finished the erasure of {report.target} of tenant {args.tenant}, begun earlier")
            print("\n".join(describe(report)))
        try:
            report = erase(settings, engine, store, args.tenant, args.login, actor, url)
        except PersonalDataError:
            if any(not r.warnings for r in earlier):
                return 0  # the rerun that finished this user's interrupted erasure
            raise
    print(f"user {args.login} of tenant {args.tenant} erased ({report.target})")
    print("\n".join(describe(report)))
    for warning in report.warnings:
        print(f"telework {args.command}: warning: {warning}", file=sys.stderr)
    if url is None:
        print(
            f"telework {args.command}: warning: no Redis configured and no `telework up` running: "
            "the user's events, dead letters and live states in Redis were not removed",
            file=sys.stderr,
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


def _head(text: str) -> Head:
    from storage.hash_chain import parse_head

    try:
        return parse_head(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="data folder (env TELEWORK_DATA_DIR; default: user data dir)"
    )


def add_parsers(sub: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``audit verify | head`` and ``retention once | run`` on the root sub-parsers."""
    audit = sub.add_parser(
        "audit", help="tamper evidence", description="Check the audit log and the evidence."
    )
    acts = audit.add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND", parser_class=parser_class
    )
    p = acts.add_parser(
        "verify",
        help="check the audit hash chain, its MACs, its head, and every evidence object's hash",
        description="Walk the audit log's hash chain (hashes and MACs), compare it with the head "
        "witness in the evidence store and with --head, and decrypt every evidence object; each "
        "problem is named on its own line. Exit 0: intact, 1: tampering found.",
    )
    _data_dir(p)
    p.add_argument("--tenant", help="check only this tenant's evidence (the chain is always checked whole)")
    p.add_argument("--no-evidence", action="store_true", help="check the audit chain only")
    p.add_argument(
        "--head",
        type=_head,
        metavar="SEQ:HASH",
        help="a head printed earlier by `telework audit head`: the chain must still hold it",
    )
    p.set_defaults(func=cmd_audit_verify)
    p = acts.add_parser(
        "head",
        help="print the newest audit entry as SEQ:HASH, to keep outside the database",
        description="Print the audit chain's head (SEQ:HASH) after checking the newest entry's MAC; "
        "keep it elsewhere (or send it to a write-once store) and pass it to `audit verify --head` "
        "later: entries removed since then, or rewritten, are found.",
    )
    _data_dir(p)
    p.set_defaults(func=cmd_audit_head)

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
