"""``telework admin task create | remove | list``: the tasks a tenant offers its workers.

Wired into :mod:`telework.cli` by :func:`add_admin_parsers` (under ``admin``). A change is
stored in the database (:mod:`storage.tasks`) and then announced on Redis
(:func:`realtime.tenant_tasks.publish_tasks`), so open agent sessions get the new list at
once. When Redis cannot be reached the change stays made; a warning on stderr says that
open sessions see it at their next connection. Errors an operator can act on are one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import ServerSettings, load_server_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _open(args: argparse.Namespace) -> tuple[ServerSettings, Engine]:
    from core.logs import setup_logging
    from storage.db import open_database

    settings = load_server_settings(data_dir=getattr(args, "data_dir", None))
    setup_logging("WARNING")
    return settings, open_database(settings)


def announce(settings: ServerSettings, tenant: str, tasks: list[str]) -> str | None:
    """Publish ``tenant``'s task list to the gateways; the reason when it could not be sent, else None."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from core.errors import OperatorError
    from core.process import redis_url
    from realtime.tenant_tasks import publish_tasks

    try:
        url = redis_url(settings, "publishing the task list")
    except OperatorError as exc:
        return str(exc)

    async def send() -> None:
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        try:
            await publish_tasks(client, tenant, tasks)
        finally:
            await client.aclose()

    try:
        asyncio.run(send())
    except (RedisError, OSError) as exc:
        return f"redis: {type(exc).__name__}: {exc}"
    return None


def cmd_task(args: argparse.Namespace) -> int:
    from storage import tasks as store

    settings, engine = _open(args)
    try:
        if args.action == "list":
            for name in store.active_tasks(engine, args.tenant):
                print(name)
            return 0
        if args.action == "create":
            changed = store.create_task(engine, args.tenant, args.name)
            done = "created" if changed else "already offered"
        else:
            store.deactivate_task(engine, args.tenant, args.name)
            changed, done = True, "removed"
        offered = store.active_tasks(engine, args.tenant)
    finally:
        engine.dispose()
    print(f"task {args.name.strip()!r} of tenant {args.tenant} {done}; {len(offered)} task(s) offered")
    if changed:
        problem = announce(settings, args.tenant, offered)
        if problem is not None:
            print(
                f"telework {args.command}: warning: open agent sessions were not told ({problem}); "
                "they get the new list at their next connection",
                file=sys.stderr,
            )
    return 0


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="data folder (env TELEWORK_DATA_DIR; default: user data dir)"
    )


def add_admin_parsers(
    objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    """Register ``admin task create | remove | list`` on the ``admin`` sub-parsers."""
    task = objs.add_parser(
        "task", help="tasks offered to a tenant's workers", description="Tasks a tenant's workers can punch."
    )
    acts = task.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    for action, text, description in (
        ("create", "offer a task", "Offer a task (or a removed one again); open sessions get the list."),
        ("remove", "stop offering a task", "Stop offering a task; past records keep its name."),
    ):
        p = acts.add_parser(action, help=text, description=description)
        _data_dir(p)
        p.add_argument("--tenant", required=True, help="tenant id")
        p.add_argument("name", help="task name (1-200 characters)")
        p.set_defaults(func=cmd_task)
    p = acts.add_parser(
        "list", help="list the offered tasks", description="Print the offered tasks, one a line."
    )
    _data_dir(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.set_defaults(func=cmd_task)
