"""Incremental daily rollups: intervals, incidents and schedules -> ``daily_rollup`` and ``task_rollup``.

The maths is :mod:`workers.analytics`; this module loads its inputs, stores its
outputs and decides which (user, local day)s to recompute. A day is always
recomputed whole, from every interval that can touch it, so recomputing a day
twice, or a day that did not change, is harmless (idempotent upserts).

How the worker learns what changed (per tenant, every ``rollup_interval_s``):

* **new intervals**: ``interval.id`` is an increasing key and the builder inserts
  a new row for every new or re-opened span, so rows with ``id`` above the last
  seen maximum are new; their (user, days they can touch) are dirty;
* **intervals closing**: intervals open in the previous cycle are re-read by id;
  the days of the ones that closed (or vanished in a rebuild) are dirty; days
  with a shift still open are recomputed every cycle anyway (clipped at now);
* **incidents**: rows with ``updated_at`` after the previous cycle (minus
  ``rollup_lag_s`` for transactions still in flight);
* **schedules**: new ``schedule`` rows (by id): a dated entry dirties its day,
  a weekly one the last ``rollup_catchup_days`` days (history before that keeps
  the plan it was computed with unless rebuilt);
* **absence**: a scheduled day nobody worked has no interval; when a local day
  ends, it is computed for every user of the tenant;
* **start-up**: the last ``rollup_catchup_days`` local days are recomputed for
  every user (what changed while no rollup worker ran); older backfills:
  :func:`rebuild_rollups`.

* **intervals changed in place** (an end moved by a late event, rows merged away):
  the builder writes a ``rollup_dirty`` marker (user, since) in the same transaction;
  the user's days from ``since`` to now are recomputed, then the markers are deleted.

Limitation: a schedule row edited in place is only picked up by the next rebuild
of its day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as clock
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.engine import Connection, Engine

from core.process import async_stop_on_signals
from core.settings import ServerSettings
from storage.db import open_database
from workers.analytics import AnalyticsError, days_between, local_day, touched_days
from workers.analytics_store import (
    INCIDENTS,
    INTERVALS,
    SCHEDULES,
    TENANTS,
    USERS_PER_QUERY,
    as_utc,
    chunks,
    group_ranges,
    rebuild_rollups,
    recompute,
    tenant_users,
    tenant_zone,
)
from workers.intervals_store import ROLLUP_DIRTY

log = logging.getLogger(__name__)

# ------------------------------------------------------------------- the worker


@dataclass
class TenantCursor:
    """What the worker has seen of one tenant."""

    max_interval_id: int = 0
    max_schedule_id: int = 0
    incidents_since: datetime | None = None
    open_ids: set[int] = field(default_factory=set)
    open_days: set[tuple[int, date]] = field(default_factory=set)
    today: date | None = None


class RollupWorker:
    """Keeps every tenant's rollups current; one loop, no background tasks."""

    def __init__(self, settings: ServerSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.cursors: dict[str, TenantCursor] = {}
        self.days_computed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every ``rollup_interval_s`` until ``stop`` is set; the cycle in hand finishes first."""
        log.info("rollup worker starting", extra={"interval_s": self.settings.rollup_interval_s})
        while not stop.is_set():
            started = clock.monotonic()
            try:
                await asyncio.to_thread(self.cycle)
            except Exception:  # the loop must survive a failed cycle (database down); next cycle retries
                log.exception("rollup cycle failed; retrying next cycle")
            wait = max(0.0, self.settings.rollup_interval_s - (clock.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.001))
        log.info("rollup worker stopped", extra={"days_computed": self.days_computed})

    def cycle(self, now: datetime | None = None) -> int:
        """One pass over every active tenant; returns the number of (user, day)s recomputed."""
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            tenants = list(
                conn.execute(select(TENANTS.c.id).where(TENANTS.c.terminated_at.is_(None))).scalars()
            )
        done = 0
        for tenant in tenants:
            try:
                done += self.cycle_tenant(tenant, now)
            except AnalyticsError as exc:  # e.g. a bad time zone: the other tenants still roll up
                log.error("tenant rollups skipped", extra={"tenant": tenant, "error": str(exc)})
        self.days_computed += done
        return done

    def cycle_tenant(self, tenant: str, now: datetime) -> int:
        cursor = self.cursors.get(tenant)
        with self.engine.connect() as conn:
            tz = tenant_zone(conn, tenant)
            today = local_day(now, tz)
            if cursor is None:
                cursor = self.cursors[tenant] = self._start(conn, tenant, now)
                first = today - timedelta(days=self.settings.rollup_catchup_days)
                done = rebuild_rollups(self.engine, tenant, first, today, now)
                cursor.open_days, cursor.today = done.open_days, today
                log.info("rollups caught up", extra={"tenant": tenant, "from": str(first), "days": done.days})
                return done.days
            dirty = self._dirty(conn, tenant, cursor, tz, now)
            marked, marker_ids = self._marked(conn, tenant, tz, now)
        dirty |= marked
        if cursor.today is not None and today != cursor.today:
            # A local day ended: compute it for everyone (absences have no interval to announce them).
            dirty |= {(u, cursor.today) for u in tenant_users(self.engine, tenant)}
        cursor.today = today
        dirty |= cursor.open_days
        computed = 0
        open_days: set[tuple[int, date]] = set()
        for (first, last), users in group_ranges(dirty).items():
            for chunk in chunks(users, USERS_PER_QUERY):
                part = recompute(self.engine, tenant, chunk, first, last, now)
                computed += part.days
                open_days |= part.open_days
        cursor.open_days = open_days
        if marker_ids:  # only once their days are recomputed
            with self.engine.begin() as conn:
                for chunk in chunks(marker_ids, 1000):
                    conn.execute(delete(ROLLUP_DIRTY).where(ROLLUP_DIRTY.c.id.in_(chunk)))
        if computed:
            log.info("rollups updated", extra={"tenant": tenant, "days": computed})
        return computed

    def _start(self, conn: Connection, tenant: str, now: datetime) -> TenantCursor:
        i = INTERVALS.c
        top = conn.execute(select(func.max(i.id)).where(i.tenant_id == tenant)).scalar_one_or_none() or 0
        open_ids = set(
            conn.execute(select(i.id).where(i.tenant_id == tenant, i.ended_at.is_(None))).scalars()
        )
        s = SCHEDULES.c
        plans = conn.execute(select(func.max(s.id)).where(s.tenant_id == tenant)).scalar_one_or_none() or 0
        return TenantCursor(
            max_interval_id=top, max_schedule_id=plans, incidents_since=now, open_ids=open_ids
        )

    def _dirty(
        self, conn: Connection, tenant: str, cursor: TenantCursor, tz: Any, now: datetime
    ) -> set[tuple[int, date]]:
        """(user, day)s touched since the previous cycle; advances the cursor."""
        i = INTERVALS.c
        cols = (i.id, i.user_id, i.started_at, i.ended_at)
        changed = list(
            conn.execute(select(*cols).where(i.tenant_id == tenant, i.id > cursor.max_interval_id))
        )
        if cursor.open_ids:
            ids = sorted(cursor.open_ids)
            for chunk in chunks(ids, 1000):
                changed += list(conn.execute(select(*cols).where(i.id.in_(chunk))))
        dirty: set[tuple[int, date]] = set()
        open_now: set[int] = set()
        for row_id, user, started, ended in changed:
            cursor.max_interval_id = max(cursor.max_interval_id, row_id)
            if ended is None:
                open_now.add(row_id)
            if user is not None:
                dirty |= {(user, d) for d in touched_days(as_utc(started), as_utc(ended), tz, now)}  # type: ignore[arg-type]
        # Open intervals that vanished (rebuilt by the builder) leave their replacement as a new row.
        cursor.open_ids = open_now
        c = INCIDENTS.c
        since = (cursor.incidents_since or now) - timedelta(seconds=self.settings.rollup_lag_s)
        for user, started in conn.execute(
            select(c.user_id, c.started_at).where(and_(c.tenant_id == tenant, c.updated_at > since))
        ):
            if user is not None:
                dirty |= {(user, d) for d in touched_days(as_utc(started), None, tz, as_utc(started))}  # type: ignore[arg-type]
        cursor.incidents_since = now
        return dirty | self._new_plans(conn, tenant, cursor, tz, now)

    def _marked(
        self, conn: Connection, tenant: str, tz: Any, now: datetime
    ) -> tuple[set[tuple[int, date]], list[int]]:
        """The builder's markers: each user's days from its earliest ``since`` to today; their ids."""
        d = ROLLUP_DIRTY.c
        rows = conn.execute(select(d.id, d.user_id, d.since).where(d.tenant_id == tenant)).all()
        earliest: dict[int, datetime] = {}
        for _, user, marked in rows:
            since = as_utc(marked) or now
            earliest[user] = min(since, earliest.get(user, since))
        dirty: set[tuple[int, date]] = set()
        for user, since in earliest.items():
            dirty |= {(user, day) for day in touched_days(since, None, tz, now)}
        return dirty, [row_id for row_id, _, _ in rows]

    def _new_plans(
        self, conn: Connection, tenant: str, cursor: TenantCursor, tz: Any, now: datetime
    ) -> set[tuple[int, date]]:
        """New schedule rows: a dated one dirties its day, a weekly one the last ``rollup_catchup_days``."""
        s = SCHEDULES.c
        rows = conn.execute(
            select(s.id, s.user_id, s.day).where(s.tenant_id == tenant, s.id > cursor.max_schedule_id)
        )
        today = local_day(now, tz)
        recent = days_between(today - timedelta(days=self.settings.rollup_catchup_days), today)
        dirty: set[tuple[int, date]] = set()
        for row_id, user, day in rows:
            cursor.max_schedule_id = max(cursor.max_schedule_id, row_id)
            dirty |= {(user, day)} if day is not None else {(user, d) for d in recent}
        return dirty


def run_rollups(settings: ServerSettings) -> None:
    """Blocking entry point of a rollup worker process; stops cleanly on SIGINT/SIGTERM."""
    engine = open_database(settings)
    try:
        asyncio.run(_serve(settings, engine))
    finally:
        engine.dispose()


async def _serve(settings: ServerSettings, engine: Engine) -> None:
    with async_stop_on_signals(asyncio.Event()) as stop:
        await RollupWorker(settings, engine).run(stop)
