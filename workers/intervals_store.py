"""Database partner of :mod:`workers.intervals` and :mod:`workers.incidents` (the builder's I/O).

Rebuilds one agent's intervals and incidents from its stored events.

Every function runs inside the caller's transaction (``conn``) and only touches
the rows of one agent from a window start on, so replaying the same events (a
stream entry delivered twice, a builder restarted mid-batch) gives the same
rows: intervals and incidents are recomputed from the ``event`` table, never
incremented.

A stored row the builders cannot use (a time outside the protocol's range, even one
Python cannot hold such as PostgreSQL's year 0 or 10000; a payload that does not parse or
lacks what its type needs; a sequence number that is not a 64-bit integer) is skipped:
:func:`load_events` leaves it out and adds a :class:`SkippedRow` to the caller's list,
and the agent's other rows still build.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, case, cast, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from realtime.protocol import EARLIEST_TIME, LATEST_TIME
from storage.activity import EventRecord, Incident, Interval
from storage.models import AgentDevice, utcnow
from storage.planning import RollupDirty
from workers import incidents as inc
from workers import intervals as itv
from workers.isolation import describe

log = logging.getLogger(__name__)

EVENTS = EventRecord.__table__  # type: ignore[attr-defined]
INTERVALS = Interval.__table__  # type: ignore[attr-defined]
ROLLUP_DIRTY = RollupDirty.__table__  # type: ignore[attr-defined]
INCIDENTS = Incident.__table__  # type: ignore[attr-defined]
DEVICES = AgentDevice.__table__  # type: ignore[attr-defined]


def aware(value: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes; make every datetime aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def user_of(conn: Connection, agent_id: str) -> int | None:
    """The user an agent device belongs to (None: unknown device or no user)."""
    user_id: int | None = conn.execute(
        select(DEVICES.c.user_id).where(DEVICES.c.id == agent_id)
    ).scalar_one_or_none()
    return user_id


@dataclass(frozen=True)
class SkippedRow:
    """An ``event`` row the builders left out, and why."""

    tenant: str
    agent: str
    event_id: str
    reason: str


IN_RANGE = EVENTS.c.ts.between(EARLIEST_TIME, LATEST_TIME)
EVENT_COLUMNS = (
    EVENTS.c.id,
    EVENTS.c.seq,
    case((IN_RANGE, EVENTS.c.ts), else_=None).label("ts"),  # out of range: never handed to the driver
    case((IN_RANGE, None), else_=cast(EVENTS.c.ts, Text)).label("ts_text"),  # ... but named in the log
    EVENTS.c.type,
    EVENTS.c.payload,
)


def load_events(
    conn: Connection,
    tenant: str,
    agent: str,
    since: datetime | None,
    types: Iterable[str] | None = None,
    skipped: list[SkippedRow] | None = None,
) -> list[itv.Ev]:
    """The agent's usable events from ``since`` on (all when None), in ``(ts, seq, id)`` order.

    Rows the builders cannot use are left out and added to ``skipped``. When the rows cannot
    even be read at once (SQLite keeps any text in any column), they are read one by one.
    """
    where = [EVENTS.c.tenant_id == tenant, EVENTS.c.agent_id == agent]
    if since is not None:
        where.append(EVENTS.c.ts >= since)
    if types is not None:
        where.append(EVENTS.c.type.in_(list(types)))
    order = (EVENTS.c.ts, EVENTS.c.seq, EVENTS.c.id)
    problems: list[tuple[str, str]] = []
    try:
        rows: Sequence[Any] = conn.execute(select(*EVENT_COLUMNS).where(*where).order_by(*order)).all()
    except OperationalError:
        raise
    except Exception as exc:
        log.warning(
            "could not read an agent's events at once; reading them one by one",
            extra={"tenant": tenant, "agent_id": agent, "error": describe(exc)},
        )
        rows = _rows_one_by_one(conn, where, order, problems)
    events: list[itv.Ev] = []
    for r in rows:
        ts = r.ts if r.ts is not None else r.ts_text
        checked = itv.event_of_row(r.id, r.seq, ts, r.type, r.payload)
        if isinstance(checked, str):
            problems.append((str(r.id), checked))
        else:
            events.append(checked)
    if skipped is not None:
        skipped.extend(SkippedRow(tenant, agent, event_id, why) for event_id, why in problems)
    return events


def _rows_one_by_one(
    conn: Connection, where: list[Any], order: tuple[Any, ...], problems: list[tuple[str, str]]
) -> list[Any]:
    """Each matching row read alone; a row that cannot be read goes to ``problems``."""
    rows: list[Any] = []
    for event_id in conn.execute(select(EVENTS.c.id).where(*where).order_by(*order)).scalars().all():
        try:
            rows.append(conn.execute(select(*EVENT_COLUMNS).where(*where, EVENTS.c.id == event_id)).one())
        except OperationalError:
            raise
        except Exception as exc:
            problems.append((str(event_id), f"unreadable row: {describe(exc)}"))
    return rows


def last_event_at(conn: Connection, tenant: str, agent: str) -> datetime | None:
    """The time of the agent's last event in the protocol's time range (None: it has none)."""
    value = conn.execute(
        select(func.max(EVENTS.c.ts)).where(
            EVENTS.c.tenant_id == tenant, EVENTS.c.agent_id == agent, IN_RANGE
        )
    ).scalar_one_or_none()
    return _opt(value)


# ------------------------------------------------------------------ intervals


def _span(row: Any) -> itv.IntervalSpan:
    return itv.IntervalSpan(
        kind=row.kind,
        value=row.value,
        started_at=aware(row.started_at),
        start_event_id=row.start_event_id,
        ended_at=_opt(row.ended_at),
        end_event_id=row.end_event_id,
        closed_by=row.closed_by,
    )


def _interval_row(tenant: str, agent: str, user_id: int | None, span: itv.IntervalSpan) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "agent_id": agent,
        "user_id": user_id,
        "kind": span.kind,
        "value": span.value,
        "started_at": span.started_at,
        "ended_at": span.ended_at,
        "start_event_id": span.start_event_id,
        "end_event_id": span.end_event_id,
        "closed_by": span.closed_by,
    }


def rebuild_intervals(
    conn: Connection,
    tenant: str,
    agent: str,
    earliest: datetime | None,
    silent: bool = False,
    skipped: list[SkippedRow] | None = None,
) -> itv.Changes:
    """Rebuild the agent's intervals from the window holding ``earliest`` (None: its open duty) on.

    Event rows the builders cannot use are left out and added to ``skipped``.
    """
    mine = (INTERVALS.c.tenant_id == tenant, INTERVALS.c.agent_id == agent)
    duty_starts = select(INTERVALS.c.started_at).where(*mine, INTERVALS.c.kind == itv.DUTY)
    if earliest is not None:
        latest = conn.execute(
            select(func.max(INTERVALS.c.started_at)).where(
                *mine, INTERVALS.c.kind == itv.DUTY, INTERVALS.c.started_at <= earliest
            )
        ).scalar_one_or_none()
        start = itv.window_start([] if latest is None else [aware(latest)], aware(earliest))
    else:
        latest = conn.execute(duty_starts.order_by(INTERVALS.c.started_at.desc()).limit(1)).scalar()
        if latest is None:
            return itv.Changes()
        start = aware(latest)
    rebuilt = itv.build_intervals(load_events(conn, tenant, agent, start, skipped=skipped), silent=silent)
    stored_rows = conn.execute(
        select(INTERVALS).where(*mine, INTERVALS.c.started_at >= start).order_by(INTERVALS.c.id)
    ).all()
    changes = itv.diff([(r.id, _span(r)) for r in stored_rows], rebuilt)
    if changes.empty:
        return changes
    user_id = user_of(conn, agent)
    if changes.delete:
        conn.execute(delete(INTERVALS).where(INTERVALS.c.id.in_(changes.delete)))
    for row_id, span in changes.update:
        conn.execute(
            update(INTERVALS)
            .where(INTERVALS.c.id == row_id)
            .values(_interval_row(tenant, agent, user_id, span))
        )
    if changes.insert:
        conn.execute(insert(INTERVALS), [_interval_row(tenant, agent, user_id, s) for s in changes.insert])
    if user_id is not None:
        mark_dirty(conn, tenant, user_id, start)
    return changes


def mark_dirty(conn: Connection, tenant: str, user_id: int, since: datetime) -> None:
    """Tell the rollup worker that ``user_id``'s intervals changed from ``since`` on (same transaction)."""
    conn.execute(
        insert(ROLLUP_DIRTY).values(tenant_id=tenant, user_id=user_id, since=since, created_at=utcnow())
    )


# ------------------------------------------------------------------ incidents


def _stored(row: Any) -> inc.StoredIncident:
    return inc.StoredIncident(
        id=row.id,
        kind=row.kind,
        started_at=aware(row.started_at),
        ended_at=_opt(row.ended_at),
        event_ids=frozenset(row.source_event_ids or ()),
        locked=bool(row.legal_hold) or row.review_status != "unreviewed",
    )


def _incident_values(draft: inc.Draft, now: datetime) -> dict[str, Any]:
    return {
        "kind": draft.kind,
        "started_at": draft.started_at,
        "ended_at": draft.ended_at,
        "evidence": list(draft.evidence),
        "trace": draft.trace,
        "source_event_ids": list(draft.event_ids),
        "updated_at": now,
    }


def rebuild_incidents(
    conn: Connection,
    tenant: str,
    agent: str,
    earliest_by_kind: Mapping[str, datetime],
    merge_window_s: float,
    close_at: datetime | None = None,
    skipped: list[SkippedRow] | None = None,
) -> inc.Plan:
    """Rebuild, kind by kind, the agent's incidents the new events (earliest per kind) can touch."""
    mine = (INCIDENTS.c.tenant_id == tenant, INCIDENTS.c.agent_id == agent)
    plans: list[inc.Plan] = []
    for kind, earliest in sorted(earliest_by_kind.items(), key=lambda item: (item[1], item[0])):
        reach = itv.seconds_before(aware(earliest), merge_window_s)
        candidates = [
            _stored(r)
            for r in conn.execute(
                select(INCIDENTS).where(
                    *mine,
                    INCIDENTS.c.kind == kind,
                    INCIDENTS.c.started_at <= aware(earliest),
                    or_(INCIDENTS.c.ended_at.is_(None), INCIDENTS.c.ended_at >= reach),
                )
            ).all()
        ]
        start = inc.window_start(candidates, aware(earliest), merge_window_s)
        events = [
            e
            for e in load_events(conn, tenant, agent, start, types=("incident",), skipped=skipped)
            if e.payload.get("kind") == kind
        ]
        drafts = inc.build_incidents(events, merge_window_s, close_at)
        stored = [
            _stored(r)
            for r in conn.execute(
                select(INCIDENTS).where(*mine, INCIDENTS.c.kind == kind, INCIDENTS.c.started_at >= start)
            ).all()
        ]
        plans.append(_apply_plan(conn, tenant, agent, inc.plan(stored, drafts)))
    return inc.Plan(
        update=tuple(u for p in plans for u in p.update),
        insert=tuple(i for p in plans for i in p.insert),
        delete=tuple(d for p in plans for d in p.delete),
    )


def _apply_plan(conn: Connection, tenant: str, agent: str, plan: inc.Plan) -> inc.Plan:
    now = utcnow()
    if plan.delete:
        conn.execute(delete(INCIDENTS).where(INCIDENTS.c.id.in_(plan.delete)))
    for row_id, draft in plan.update:
        conn.execute(update(INCIDENTS).where(INCIDENTS.c.id == row_id).values(_incident_values(draft, now)))
    if plan.insert:
        user_id = user_of(conn, agent)
        conn.execute(
            insert(INCIDENTS),
            [
                {
                    "tenant_id": tenant,
                    "agent_id": agent,
                    "user_id": user_id,
                    "review_status": "unreviewed",
                    "legal_hold": False,
                    "created_at": now,
                    **_incident_values(draft, now),
                }
                for draft in plan.insert
            ],
        )
    return plan


# --------------------------------------------------------------------- silence


def open_agents(conn: Connection) -> list[tuple[str, str]]:
    """(tenant, agent) of every agent with an open interval or incident."""
    found: set[tuple[str, str]] = set()
    for table in (INTERVALS, INCIDENTS):
        rows = conn.execute(
            select(table.c.tenant_id, table.c.agent_id).where(table.c.ended_at.is_(None)).distinct()
        ).all()
        found.update((r[0], r[1]) for r in rows)
    return sorted(found)


def close_silent(
    conn: Connection,
    tenant: str,
    agent: str,
    merge_window_s: float,
    skipped: list[SkippedRow] | None = None,
) -> datetime | None:
    """Close the agent's open intervals and incidents at its last event; returns that time."""
    last = last_event_at(conn, tenant, agent)
    if last is None:
        return None
    rebuild_intervals(conn, tenant, agent, None, silent=True, skipped=skipped)
    open_kinds = conn.execute(
        select(INCIDENTS.c.kind, func.min(INCIDENTS.c.started_at))
        .where(INCIDENTS.c.tenant_id == tenant, INCIDENTS.c.agent_id == agent, INCIDENTS.c.ended_at.is_(None))
        .group_by(INCIDENTS.c.kind)
    ).all()
    if open_kinds:
        rebuild_incidents(
            conn,
            tenant,
            agent,
            {k: aware(t) for k, t in open_kinds},
            merge_window_s,
            close_at=last,
            skipped=skipped,
        )
    return last
