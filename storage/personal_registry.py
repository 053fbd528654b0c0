"""Where data about a person is kept: every table, evidence blob and Redis key, declared once. Pure.

:data:`HOLDINGS` lists each place in the database where rows are about a person, how those rows
are found (:class:`Match`) and what an erasure does to them (:data:`Action`); ``export-user``
exports every holding and ``erase-user`` applies every holding, in this order (children before
the rows they reference, the user last). :data:`NOT_PERSONAL` names every other table and why it
holds nothing about a person. ``tests/test_personal_registry.py`` fails when a table with a user
column (:func:`user_columns`) is in the schema but not declared here, or a declared column is not
handled.

:data:`BLOBS` and :data:`REDIS` declare the same for the evidence store and for Redis (by the
name of the :mod:`realtime.keys` function that makes the key; this layer cannot import it, the
test checks the names), :data:`REDIS_NOT_PERSONAL` the other keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

SUBJECT_TABLE = "tw_user"
ERASED_ACTOR = "erased-user"  # what an erased person's login becomes where a row only names them


class Match(Enum):
    """How the rows of a holding that are about the person are found."""

    USER = "user"  # column == the user's id
    AGENT = "agent"  # the tenant's rows whose column is one of the user's agents
    USER_OR_AGENT = "user_or_agent"  # the tenant's rows with user_id the user or agent_id one of theirs
    EVIDENCE = "evidence"  # theirs by user or agent; by their incidents' ids or lists unless someone else's
    INCIDENT = "incident"  # the tenant's rows whose column is one of their incidents
    LOGIN = "login"  # the tenant's rows whose column is the user's login (an actor)
    TARGET = "target"  # column == "user:<id>" (audit entries about the user)


Action = Literal["delete", "unlink", "pseudonymise", "keep"]


@dataclass(frozen=True)
class Holding:
    """Rows of ``table`` that are about a person, found by ``column`` (and ``match``).

    ``delete``: the rows go; ``unlink``: ``column`` is set to NULL (the row is someone else's);
    ``pseudonymise``: ``column`` becomes :data:`ERASED_ACTOR`; ``keep``: the rows stay (``why``).
    ``also``: the table's other user columns the match covers. ``export``: the columns exported
    (None: all but secrets), for rows that are mostly about someone else.
    """

    name: str  # the key in the export and in the erasure counts
    table: str
    column: str
    match: Match
    action: Action
    why: str
    also: tuple[str, ...] = ()
    export: tuple[str, ...] | None = None


HOLDINGS: tuple[Holding, ...] = (
    Holding("evidence_object", "evidence_object", "user_id", Match.EVIDENCE, "delete",
            "webcam stills and screenshots (the blobs go after the rows)", ("agent_id", "incident_id")),
    Holding("evidence_object.incident_id", "evidence_object", "incident_id", Match.INCIDENT, "unlink",
            "someone else's evidence attached to their incident: kept, detached from it",
            export=("id", "sha256", "incident_id")),
    Holding("face_template", "face_template", "user_id", Match.USER, "delete",
            "their registered face images, one row each (console or agent): the encrypted embedding, "
            "the image's hash and size; the encrypted images are blobs (they go after the rows)"),
    Holding("incident", "incident", "user_id", Match.USER_OR_AGENT, "delete",
            "peeking, impersonation and camera incidents about them", ("agent_id",)),
    Holding("incident.reviewer_id", "incident", "reviewer_id", Match.USER, "unlink",
            "others' incidents they reviewed: the review stays, the reviewer is removed",
            export=("id", "reviewer_id", "review_status", "reviewed_at", "comment")),
    Holding("interval", "interval", "user_id", Match.USER_OR_AGENT, "delete",
            "duty, presence and task intervals", ("agent_id",)),
    Holding("event", "event", "agent_id", Match.AGENT, "delete", "every event of their agents"),
    Holding("daily_rollup", "daily_rollup", "user_id", Match.USER, "delete", "daily attendance"),
    Holding("task_rollup", "task_rollup", "user_id", Match.USER, "delete", "time per task per day"),
    Holding("rollup_dirty", "rollup_dirty", "user_id", Match.USER, "delete", "days waiting for a rollup"),
    Holding("schedule", "schedule", "user_id", Match.USER, "delete", "their planned working days"),
    Holding("membership", "membership", "user_id", Match.USER, "delete", "the groups they are in"),
    Holding("user_agent_settings", "user_agent_settings", "user_id", Match.USER, "delete",
            "agent settings they override"),
    Holding("agent_settings_change", "agent_settings_change", "user_id", Match.USER, "delete",
            "the history of their overrides (its target is their login)", ("target",)),
    Holding("agent_settings_change.actor", "agent_settings_change", "actor", Match.LOGIN, "pseudonymise",
            "settings changes they made: kept, their login replaced",
            export=("id", "level", "field", "changed_at", "actor")),
    Holding("agent_device", "agent_device", "user_id", Match.USER, "delete",
            "their agents: deleting the device revokes its token (open sessions are closed)"),
    Holding("web_credential", "web_credential", "user_id", Match.USER, "delete",
            "their console password (exported without the hash) and its version"),
    Holding("web_setup_code", "web_setup_code", "user_id", Match.USER, "delete",
            "one-time codes to set their console password", export=("user_id", "created_at", "expires_at",
                                                                     "used_at")),
    Holding("user_legal_hold", "user_legal_hold", "user_id", Match.USER, "delete",
            "whether their data is under legal hold (an erasure is refused while it is on)"),
    Holding("web_second_factor", "web_second_factor", "user_id", Match.USER, "delete",
            "their TOTP second factor (exported without the sealed secret)",
            export=("user_id", "created_at", "enabled_at")),
    Holding("web_recovery_code", "web_recovery_code", "user_id", Match.USER, "delete",
            "their second factor's recovery codes (sha256 only)",
            export=("user_id", "created_at", "used_at")),
    Holding("web_api_token", "web_api_token", "user_id", Match.USER, "delete",
            "their API tokens (exported without the hash)",
            export=("id", "name", "created_at", "expires_at", "last_used_at", "revoked_at")),
    Holding("audit_log", "audit_log", "actor", Match.LOGIN, "keep",
            "audit entries they made: the audit log is a hash chain, entries cannot change"),
    Holding("audit_log.target", "audit_log", "target", Match.TARGET, "keep",
            "audit entries about them, which name them by id only (user:<id>)"),
    Holding("tw_user", SUBJECT_TABLE, "id", Match.USER, "delete",
            "the person: login, name, role, language, time zone", ("login", "name")),
)  # fmt: skip


@dataclass(frozen=True)
class NotPersonal:
    table: str
    why: str


NOT_PERSONAL: tuple[NotPersonal, ...] = (
    NotPersonal("tenant", "the customer organisation"),
    NotPersonal("tw_group", "group names of a tenant"),
    NotPersonal("task", "task names a tenant offers"),
    NotPersonal("data_key", "a tenant's wrapped data keys"),
    NotPersonal("tenant_agent_settings", "tenant-wide agent settings"),
    NotPersonal("group_schedule", "weekly patterns and dated exceptions of a group"),
    NotPersonal("tenant_holiday", "a tenant's own holidays"),
    NotPersonal("holiday_calendar", "the public holiday calendar a tenant observes"),
    NotPersonal("group_agent_settings", "group-wide agent settings"),
    NotPersonal("tenant_policy", "a tenant's retention period and legal hold"),
    NotPersonal("alembic_version", "the schema revision"),
)


@dataclass(frozen=True)
class BlobHolding:
    """Objects in the evidence store about a person, found through a holding's rows."""

    name: str
    holding: str  # the Holding whose rows name the objects
    column: str  # the column with the object's sha256 (evidence) or storage key (face images)
    why: str


BLOBS: tuple[BlobHolding, ...] = (
    BlobHolding("evidence", "evidence_object", "storage_key", "encrypted stills and screenshots"),
    BlobHolding("face_images", "face_template", "image_key", "encrypted registered face images"),
)


@dataclass(frozen=True)
class RedisHolding:
    """A Redis key (made by ``realtime.keys.<key>``) holding data about a person."""

    key: str  # the realtime.keys function that names the key for a tenant
    holds: str
    erase: str


REDIS: tuple[RedisHolding, ...] = (
    RedisHolding("events_stream", "entries of their agents (StreamEvent: agent, events, traces)",
                 "XACK in every group, then XDEL"),
    RedisHolding("dead_letter_stream", "dead letters of their agents' entries", "XDEL"),
    RedisHolding("live_hash", "their agents' live states (their name, state, task)",
                 "HDEL, then the state without the person published"),
    RedisHolding("settings_key", "their setting overrides and groups, by user id",
                 "rewritten from the database"),
)  # fmt: skip
REDIS_FILES = "append-only file: rewritten (BGREWRITEAOF) so erased commands leave the disk"
REDIS_NOT_PERSONAL: dict[str, str] = {
    "TENANTS": "tenant ids",
    "live_channel": "pub/sub: nothing is stored (the scrubbed state is published on it)",
    "settings_channel": "pub/sub: nothing is stored",
    "tasks_channel": "pub/sub: nothing is stored",
}

# --------------------------------------------------------------------------- the rule

USER_COLUMN_NAMES = frozenset({"user_id", "login", "agent_id", "reviewer_id", "actor"})


def user_columns(table: Any, personal: Iterable[str] = ()) -> list[str]:
    """The columns of ``table`` (a SQLAlchemy Table) that can tie a row to a person.

    The rule: a column named like a person (:data:`USER_COLUMN_NAMES`, ``*_user_id``,
    ``*_login``), or a foreign key to ``tw_user``, ``agent_device`` or another table in
    ``personal``; in ``tw_user`` itself also ``name``.
    """
    linked = {SUBJECT_TABLE, "agent_device", *personal}
    found: list[str] = []
    for column in table.columns:
        name = column.name
        named = name in USER_COLUMN_NAMES or name.endswith(("_user_id", "_login"))
        keyed = any(fk.column.table.name in linked for fk in column.foreign_keys)
        subject = table.name == SUBJECT_TABLE and name in ("id", "login", "name")
        if named or keyed or subject:
            found.append(name)
    return found


def personal_tables() -> frozenset[str]:
    return frozenset(h.table for h in HOLDINGS)


def handled_columns(table: str) -> frozenset[str]:
    """Every user column the holdings of ``table`` cover."""
    return frozenset(c for h in HOLDINGS if h.table == table for c in (h.column, *h.also))


def problems(tables: Iterable[Any]) -> list[str]:
    """What the registry misses for these tables (SQLAlchemy Tables): one line per problem."""
    personal = personal_tables()
    impersonal = {n.table for n in NOT_PERSONAL}
    out: list[str] = []
    for table in sorted(tables, key=lambda t: t.name):
        columns = user_columns(table, personal)
        if table.name in impersonal:
            if columns:
                out.append(
                    f"table {table.name}: declared not personal, but has user column(s) {', '.join(columns)}"
                )
            continue
        if table.name not in personal:
            what = f"user column(s) {', '.join(columns)}" if columns else "no user column"
            out.append(f"table {table.name}: not declared in storage/personal_registry.py ({what})")
            continue
        missing = [c for c in columns if c not in handled_columns(table.name)]
        if missing:
            out.append(f"table {table.name}: user column(s) {', '.join(missing)} not handled by a holding")
        unknown = [c for c in handled_columns(table.name) if c not in table.c]
        if unknown:
            out.append(f"table {table.name}: declared column(s) {', '.join(sorted(unknown))} do not exist")
    return out
