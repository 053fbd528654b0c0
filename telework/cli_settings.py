"""``telework admin settings set | show | history``: the agent settings of a tenant, its groups and users.

Wired into :mod:`telework.cli` by :func:`add_admin_parsers` (under ``admin``). One flag per
:class:`~realtime.protocol.AgentSettings` field, named, explained and range-checked from the
model (:mod:`realtime.protocol.agent_settings`), so a bound is written once, in the model. A value out of
range is one line naming the flag, the field and the range, exit code 2; so is an unknown
tenant, group or user. Changes are stored in the database with their history and a
``settings.set`` audit entry (actor and source: the OS user) and then pushed to open
sessions; without Redis a warning says they apply at the next connection.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from realtime.protocol.agent_settings import (
    DEFAULTS,
    FIELDS,
    SettingsError,
    SettingValue,
    allowed,
    choices,
    describe,
    field_of,
    flag_of,
    parse_value,
    value_text,
)
from telework.cli_base import open_admin

PREFIX = "s_"  # argparse dest of a setting flag: s_<field>


def metavar(field: str) -> str:
    """``away_after_s`` -> SECONDS, ``analysis_fps`` -> FPS, ``incident_action`` -> {log,lock}."""
    options = choices(field)
    if options is not None:
        return "{" + ",".join(options) + "}"
    last = field.rsplit("_", 1)[-1]
    return "SECONDS" if last == "s" else last.upper()


def flag_help(field: str) -> str:
    """``away after this long without the user's face; a number from 1 to 3600 (default 30)``."""
    return f"{describe(field)}; {allowed(field)} (default {value_text(getattr(DEFAULTS, field))})"


def value_type(field: str) -> Callable[[str], SettingValue]:
    """The argparse type of ``field``'s flag: the model's check, its error as argparse's."""

    def parse(text: str) -> SettingValue:
        try:
            return parse_value(field, text)
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = field  # argparse names the type in some messages
    return parse


def _setting_name(text: str) -> str:
    try:
        return field_of(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ----------------------------------------------------------------------- commands


def cmd_set(args: argparse.Namespace) -> int:
    from storage.audit_trail import cli_actor
    from telework.admin_settings import set_settings

    changes = {k[len(PREFIX) :]: v for k, v in vars(args).items() if k.startswith(PREFIX) and v is not None}
    settings, engine = open_admin(args)
    try:
        outcome = set_settings(
            settings,
            engine,
            args.tenant,
            changes,
            args.unset or (),
            group=args.group,
            login=args.user,
            actor=cli_actor(),
        )
    finally:
        engine.dispose()
    where = outcome.target.label
    if not outcome.changes:
        print(f"agent settings of {where} unchanged: they already have these values")
        return 0
    print(f"agent settings of {where} changed:")
    for change in outcome.changes:
        print(f"  {change.field}: {value_text(change.old)} -> {value_text(change.new)}")
    if outcome.not_pushed is not None:
        print(
            f"telework {args.command}: warning: open agent sessions were not told ({outcome.not_pushed}); "
            "they get the new settings at their next connection",
            file=sys.stderr,
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from storage.agent_settings_store import effective_for

    _settings, engine = open_admin(args)
    try:
        target, effective = effective_for(engine, args.tenant, args.user)
    finally:
        engine.dispose()
    values = {f: value_text(getattr(effective.settings, f)) for f in FIELDS}
    name_w = max(len(f) for f in FIELDS)
    value_w = max(len(v) for v in values.values())
    print(f"effective agent settings of {target.label}:")
    for field in FIELDS:
        print(f"  {field:<{name_w}}  {values[field]:<{value_w}}  {effective.sources[field]}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from storage.agent_settings_store import history

    _settings, engine = open_admin(args)
    try:
        entries = history(engine, args.tenant, args.limit)
    finally:
        engine.dispose()
    if not entries:
        print(f"no agent settings changes recorded for tenant {args.tenant}")
    for e in entries:
        where = e.level if e.level == "tenant" else f"{e.level} {e.target}"
        when = e.changed_at.isoformat(timespec="seconds")
        print(f"{when} {e.actor} {where} {e.field}: {value_text(e.old)} -> {value_text(e.new)}")
    return 0


# ------------------------------------------------------------------------ parsing


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="data folder (env TELEWORK_DATA_DIR; default: user data dir)"
    )
    p.add_argument("--tenant", required=True, help="tenant id")


MAX_HISTORY = 1_000_000  # --limit: more history rows than anyone reads on a terminal


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if not 1 <= value <= MAX_HISTORY:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_HISTORY}, got {value}")
    return value


def add_admin_parsers(
    objs: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    """Register ``admin settings set | show | history`` on the ``admin`` sub-parsers."""
    st = objs.add_parser(
        "settings",
        help="agent settings of a tenant, its groups and users",
        description="Agent settings: tenant -> group -> user, stored in the database, pushed live.",
    )
    acts = st.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)

    p = acts.add_parser(
        "set",
        help="change agent settings of a tenant, a group or a user and push them live",
        description="Change agent settings at one level (the tenant, --group or --user); each value "
        "overrides the level above (tenant -> groups -> user). Stored with its history; open "
        "sessions get their new effective settings at once.",
    )
    _common(p)
    level = p.add_mutually_exclusive_group()
    level.add_argument("--group", help="change the settings of this group (name) of the tenant")
    level.add_argument("--user", help="change the settings of this user (login) of the tenant")
    for field in FIELDS:
        p.add_argument(
            flag_of(field),
            dest=PREFIX + field,
            type=value_type(field),
            metavar=metavar(field),
            help=flag_help(field),
        )
    p.add_argument(
        "--unset",
        action="append",
        type=_setting_name,
        metavar="SETTING",
        help="stop overriding SETTING at this level (inherit it again); repeatable, e.g. away_after_s",
    )
    p.set_defaults(func=cmd_set)

    p = acts.add_parser(
        "show",
        help="print the effective agent settings and where each comes from",
        description="Print the effective agent settings of the tenant (or of --user) and the source "
        "of each value: default, tenant, group NAME or user.",
    )
    _common(p)
    p.add_argument("--user", help="the effective settings of this user (login)")
    p.set_defaults(func=cmd_show)

    p = acts.add_parser(
        "history",
        help="print the recorded changes of a tenant's agent settings",
        description="Print every recorded change (when, who, level, field, old -> new), oldest first.",
    )
    _common(p)
    p.add_argument("--limit", type=_positive, help="only the newest N changes")
    p.set_defaults(func=cmd_history)
