"""``telework admin task create | remove | list``: the tasks a tenant offers its workers.

Wired into :mod:`telework.cli` by :func:`add_admin_parsers` (under ``admin``). A change is
stored in the database (:mod:`storage.tasks`) and then announced on Redis
(:func:`realtime.tenant_tasks.publish_tasks`), so open agent sessions get the new list at
once; each change is audited (``task.create``, ``task.remove``, actor and source the OS user).
When Redis cannot be reached the change stays made; a warning on stderr says that
open sessions see it at their next connection. ``list`` of an unknown tenant is an error.
Errors an operator can act on are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from core.logs import printable
from telework.cli_base import data_dir_option, open_admin

if TYPE_CHECKING:
    from core.settings import ServerSettings


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
    from telework.cli_accounts import who

    settings, engine = open_admin(args)
    try:
        if args.action == "list":
            for name in store.listed_tasks(engine, args.tenant):
                print(printable(name))
            return 0
        if args.action == "create":
            changed = store.create_task(engine, args.tenant, args.name, **who())
            done = "created" if changed else "already offered"
        else:
            store.deactivate_task(engine, args.tenant, args.name, **who())
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
        data_dir_option(p)
        p.add_argument("--tenant", required=True, help="tenant id")
        p.add_argument("name", help="task name (1-200 characters)")
        p.set_defaults(func=cmd_task)
    p = acts.add_parser(
        "list", help="list the offered tasks", description="Print the offered tasks, one a line."
    )
    data_dir_option(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.set_defaults(func=cmd_task)
