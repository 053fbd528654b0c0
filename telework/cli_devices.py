"""``telework admin agent create | list | revoke | reissue``: agent devices and their tokens.

Wired in by :func:`telework.cli_accounts.add_admin_parsers`. Changes are audited by
:mod:`storage.accounts` (never with a token); ``list`` shows each device's user, status and
created time from the database, and its last seen, online flag and agent version (of its newest
session's hello) from the gateways' live state in Redis (``?`` and a warning when Redis cannot be
reached).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from telework.cli_accounts import when, who
from telework.cli_base import data_dir_option, open_admin, table

if TYPE_CHECKING:
    from core.settings import ServerSettings
    from realtime.protocol import LiveState
    from storage.directory import AgentRow

NO_LIVE_STATE = "never"  # an agent that never opened a session (or whose live state was erased)


def cmd_agent_admin(args: argparse.Namespace) -> int:
    from storage import accounts, directory

    settings, engine = open_admin(args)
    try:
        if args.action == "create":
            token = accounts.create_agent(engine, args.tenant, args.agent_id, args.user, **who())
            print(f"agent {args.agent_id} created in tenant {args.tenant}; its token (shown only once):")
            print(token)
        elif args.action == "reissue":
            token = accounts.reissue_token(engine, args.agent_id, **who())
            print(f"agent {args.agent_id} has a new token (shown only once; the old one no longer works):")
            print(token)
        elif args.action == "revoke":
            if accounts.revoke_agent(engine, args.agent_id, **who()):
                print(f"agent {args.agent_id} revoked")
            else:
                print(f"agent {args.agent_id} was already revoked")
        else:
            rows = directory.agents(engine, args.tenant)
            seen, problem = _live_states(settings, args.tenant)
            _print_agents(rows, seen)
            if problem is not None:
                print(f"telework {args.command}: warning: last seen unknown ({problem})", file=sys.stderr)
    finally:
        engine.dispose()
    return 0


def _print_agents(rows: list[AgentRow], seen: dict[str, LiveState] | None) -> None:
    def last(agent_id: str) -> tuple[str, str, str]:
        if seen is None:
            return "?", "?", "?"
        live = seen.get(agent_id)
        if live is None:
            return NO_LIVE_STATE, "no", "-"
        return when(live.last_seen), "yes" if live.online else "no", live.agent_version or "-"

    body = []
    for a in rows:
        status = "active" if a.revoked_at is None else f"revoked {when(a.revoked_at)}"
        body.append((a.id, a.login or "-", status, *last(a.id), when(a.created_at)))
    for line in table(("ID", "USER", "STATUS", "LAST SEEN", "ONLINE", "VERSION", "CREATED"), body):
        print(line)


def _live_states(settings: ServerSettings, tenant: str) -> tuple[dict[str, LiveState] | None, str | None]:
    """``{agent_id: its live state}`` (last seen, online, agent version) from the gateways' live hash
    in Redis; (None, why) without it."""
    import redis
    from redis.exceptions import RedisError

    from core.errors import OperatorError
    from core.process import redis_url
    from realtime import keys
    from realtime.live_states import states_of

    try:
        url = redis_url(settings, "the last-seen column")
    except OperatorError as exc:
        return None, str(exc)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        raw = client.hgetall(keys.live_hash(tenant))
    except (RedisError, OSError) as exc:
        return None, f"redis: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return states_of(raw, tenant), None


def add_agent_parsers(
    objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    agent = objs.add_parser("agent", help="agent devices and tokens", description="Agent devices and tokens.")
    ag = agent.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    p = ag.add_parser(
        "create",
        help="register an agent device and print its token once",
        description="Register an agent device; its token is printed once (stored hashed).",
    )
    data_dir_option(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.add_argument("agent_id", help="agent id (lowercase slug, unique across tenants)")
    p.add_argument("--user", help="login of the user of this device")
    p.set_defaults(func=cmd_agent_admin)
    p = ag.add_parser(
        "list",
        help="list a tenant's agents with their user and last seen",
        description="Print a tenant's agent devices: user, status, last seen and online (from the live "
        "state in Redis), created.",
    )
    data_dir_option(p)
    p.add_argument("--tenant", required=True, help="tenant id")
    p.set_defaults(func=cmd_agent_admin)
    for action, text, description in (
        ("revoke", "revoke an agent's token", "Revoke an agent device's token."),
        (
            "reissue",
            "give an agent a new token, printed once",
            "Give an agent device a new token (printed once); the old one stops working and a "
            "revocation is lifted.",
        ),
    ):
        p = ag.add_parser(action, help=text, description=description)
        data_dir_option(p)
        p.add_argument("agent_id", help="agent id")
        p.set_defaults(func=cmd_agent_admin)
