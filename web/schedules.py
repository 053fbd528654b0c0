"""Work schedules in the console: reading and changing users' and groups' entries, the holiday
calendar and a user's resulting plan, every query through the caller's :class:`~web.scope.Scope`.

Who may: an administrator reads and changes every schedule of the tenant and its holidays; a
manager reads the schedules of the groups they manage and of their members (and their own); a
worker reads their own schedule and plan. Holidays are read by everyone of the tenant. A user or
group outside the caller's scope is 404; a change their role may not make is 403.

Every change is audited (``schedule.add`` / ``schedule.change`` / ``schedule.remove`` about
``user:<id>`` or ``group:<id>``, ``holiday.*`` about ``tenant:<id>``; old -> new) in the
transaction that makes it, and marks the days it can change for the rollup worker
(``rollup_dirty``): a dated change its day, a weekly one at most the last
:data:`RECOMPUTE_DAYS` days (older days: :func:`workers.analytics_store.rebuild_rollups`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from storage import calendars
from storage.account_rules import AccountError, display_name
from storage.audit_trail import AuditAction, audit
from storage.calendars import COUNTRIES, GroupSchedule, HolidayCalendar, TenantHoliday
from storage.models import Group, Membership, User
from storage.planning import RollupDirty, Schedule
from web.audit import at, user_actor
from web.deps import Problem
from web.schedule_csv import FIRST_DAY, LAST_DAY
from web.scope import Scope
from workers.analytics import day_start, zone

log = logging.getLogger(__name__)

Kind = Literal["user", "group"]
RECOMPUTE_DAYS = 31  # a weekly change re-rolls at most this many past days
MAX_PLAN_DAYS = 62  # days of one plan request
USER_ROWS = Schedule.__table__  # type: ignore[attr-defined]
GROUP_ROWS = GroupSchedule.__table__  # type: ignore[attr-defined]
DIRTY = RollupDirty.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Entry:
    """A weekly entry (``weekday``) or a dated exception (``day``); no times: a day off."""

    weekday: int | None = None
    day: date | None = None
    start: time | None = None
    end: time | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    def audited(self) -> dict[str, Any]:
        return {k: None if v is None else str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EntryView:
    id: int
    entry: Entry


@dataclass(frozen=True)
class Subject:
    """Whose entries: a user or a group (its id and, for pages, its name)."""

    kind: Kind
    id: int
    name: str


def _entry_of(row: Any) -> EntryView:
    return EntryView(
        row.id, Entry(row.weekday, row.day, row.start_time, row.end_time, row.valid_from, row.valid_to)
    )


def checked(entry: Entry) -> Entry:
    """``entry``, or a 422 naming the field and what was expected."""
    problem = calendars.entry_problem(
        entry.weekday, entry.day, entry.start, entry.end, entry.valid_from, entry.valid_to
    )
    if problem is not None:
        raise Problem(422, "schedules_bad_entry", field=problem[0], expected=problem[1])
    return entry


def subject(scope: Scope, kind: Kind, subject_id: int) -> Subject:
    """The visible user or group ``subject_id``, else 404."""
    with Session(scope.engine) as s:
        if kind == "user":
            user = s.execute(scope.visible_users().where(col(User.id) == subject_id)).scalar_one_or_none()
            if user is not None:
                return Subject("user", subject_id, user.login)
        else:
            group = s.execute(scope.visible_groups().where(col(Group.id) == subject_id)).scalar_one_or_none()
            if group is not None:
                return Subject("group", subject_id, group.name)
    raise Problem(404, "not_found")


def groups(scope: Scope) -> list[Group]:
    """The groups whose schedules the caller may read, by name."""
    with Session(scope.engine) as s:
        return list(s.execute(scope.visible_groups().order_by(col(Group.name))).scalars())


def may_change(scope: Scope) -> bool:
    return scope.principal.role == "admin"


def must_change(scope: Scope) -> None:
    if not may_change(scope):
        raise Problem(403, "forbidden")


def _table(kind: Kind) -> Any:
    return USER_ROWS if kind == "user" else GROUP_ROWS


def _owner(kind: Kind) -> str:
    return "user_id" if kind == "user" else "group_id"


def entries(scope: Scope, who: Subject) -> list[EntryView]:
    """The subject's entries: weekly ones by weekday, then exceptions by date."""
    table = _table(who.kind)
    with scope.engine.connect() as conn:
        rows = conn.execute(
            select(table).where(
                table.c.tenant_id == scope.principal.tenant, table.c[_owner(who.kind)] == who.id
            )
        ).all()
    views = [_entry_of(r) for r in rows]
    return sorted(
        views,
        key=lambda v: (v.entry.day is not None, v.entry.weekday or 0, v.entry.day or date.min, v.id),
    )


def _members(s: Session, tenant: str, who: Subject) -> list[int]:
    if who.kind == "user":
        return [who.id]
    return list(
        s.execute(
            select(col(Membership.user_id)).where(
                col(Membership.tenant_id) == tenant,
                col(Membership.group_id) == who.id,
                col(Membership.role) == "member",
            )
        ).scalars()
    )


def dirty_since(entry: Entry, today: date) -> date | None:
    """Pure: the first local day whose rollup ``entry`` can change, or None (only future days)."""
    if entry.day is not None:
        return entry.day if entry.day <= today else None
    first = max(entry.valid_from or date.min, today - timedelta(days=RECOMPUTE_DAYS))
    return first if first <= today else None


def mark_dirty(s: Session, tenant: str, users: Iterable[int], first: date | None, now: float) -> None:
    """Rollup markers: ``users``' days from ``first`` (tenant's local day) on are recomputed."""
    users = sorted(set(users))
    if first is None or not users:
        return
    tz_name = s.execute(select(calendars.TENANTS.c.time_zone).where(calendars.TENANTS.c.id == tenant))
    # within the schedules' dates (no activity lies outside them), so that no date overflows a datetime
    first = min(max(first, FIRST_DAY), LAST_DAY)
    since = day_start(first, zone(tz_name.scalar_one_or_none()))
    when = at(now)
    s.execute(
        insert(DIRTY),
        [{"tenant_id": tenant, "user_id": u, "since": since, "created_at": when} for u in users],
    )


def today_of(scope: Scope, now: float) -> date:
    return datetime.fromtimestamp(now, UTC).astimezone(zone(scope.principal.tenant_time_zone)).date()


def store_entries(
    s: Session, scope: Scope, who: Subject, new: Sequence[Entry], *, source: str, now: float
) -> list[int]:
    """Add ``new`` entries of ``who`` in ``s``'s transaction (audited, rollups marked); their ids."""
    p = scope.principal
    table = _table(who.kind)
    ids: list[int] = []
    members = _members(s, p.tenant, who)
    today = today_of(scope, now)
    for entry in new:
        row = {"tenant_id": p.tenant, _owner(who.kind): who.id, **_columns(entry), "created_at": at(now)}
        entry_id = int(s.execute(insert(table).values(row).returning(table.c.id)).scalar_one())
        ids.append(entry_id)
        audit(
            s, AuditAction.SCHEDULE_ADD, actor=user_actor(p.user_id), source=source,
            target=f"{who.kind}:{who.id}", tenant_id=p.tenant, new=entry.audited(), entry=entry_id,
            at=at(now),
        )  # fmt: skip
        mark_dirty(s, p.tenant, members, dirty_since(entry, today), now)
    return ids


def add_entry(scope: Scope, who: Subject, entry: Entry, *, source: str, now: float) -> EntryView:
    """Add one entry (administrators only)."""
    must_change(scope)
    checked(entry)
    with Session(scope.engine) as s:
        (entry_id,) = store_entries(s, scope, who, [entry], source=source, now=now)
        s.commit()
    return EntryView(entry_id, entry)


def _columns(entry: Entry) -> dict[str, Any]:
    return {
        "weekday": entry.weekday, "day": entry.day, "start_time": entry.start, "end_time": entry.end,
        "valid_from": entry.valid_from, "valid_to": entry.valid_to,
    }  # fmt: skip


def change_entry(
    scope: Scope, who: Subject, entry_id: int, new: Entry | None, *, source: str, now: float
) -> EntryView | None:
    """Replace (``new``) or remove (None) one entry of ``who`` (administrators only); 404 when
    ``who`` has no such entry. Audited old -> new; both the old and the new days are re-rolled."""
    p = scope.principal
    table = _table(who.kind)
    where = (table.c.id == entry_id, table.c.tenant_id == p.tenant, table.c[_owner(who.kind)] == who.id)
    with Session(scope.engine) as s:
        row = s.execute(select(table).where(*where)).first()
        if row is None:
            raise Problem(404, "not_found")
        must_change(scope)
        old = _entry_of(row).entry
        if new is None:
            s.execute(delete(table).where(*where))
        else:
            s.execute(update(table).where(*where).values(_columns(checked(new))))
        action = AuditAction.SCHEDULE_REMOVE if new is None else AuditAction.SCHEDULE_CHANGE
        audit(
            s, action, actor=user_actor(p.user_id), source=source, target=f"{who.kind}:{who.id}",
            tenant_id=p.tenant, old=old.audited(), new=None if new is None else new.audited(),
            entry=entry_id, at=at(now),
        )  # fmt: skip
        today = today_of(scope, now)
        since = [
            d
            for d in (dirty_since(old, today), None if new is None else dirty_since(new, today))
            if d is not None
        ]
        mark_dirty(s, p.tenant, _members(s, p.tenant, who), min(since, default=None), now)
        s.commit()
    return None if new is None else EntryView(entry_id, new)


def remove_entry(scope: Scope, who: Subject, entry_id: int, *, source: str, now: float) -> None:
    """Remove one entry of ``who`` (administrators only); 404 when ``who`` has no such entry."""
    change_entry(scope, who, entry_id, None, source=source, now=now)


# ------------------------------------------------------------------ plans and holidays


def plan(scope: Scope, user_id: int, first: date, last: date) -> list[calendars.DayPlan]:
    """The visible user's plan of each day from ``first`` to ``last`` (days without a plan left out)."""
    if last < first or (last - first).days >= MAX_PLAN_DAYS:
        raise Problem(422, "schedules_bad_range", days=MAX_PLAN_DAYS)
    subject(scope, "user", user_id)
    tenant = scope.principal.tenant
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    with scope.engine.connect() as conn:
        rows = conn.execute(
            select(USER_ROWS).where(USER_ROWS.c.tenant_id == tenant, USER_ROWS.c.user_id == user_id)
        ).mappings()
        own = [dict(r) for r in rows]
        groups = calendars.group_rows_of(conn, tenant, [user_id])[user_id]
        off = calendars.holidays_between(conn, tenant, first, last, scope.principal.language)
    return list(calendars.plans(own, days, groups, off).values())


@dataclass(frozen=True)
class HolidayView:
    id: int
    day: date
    name: str


@dataclass(frozen=True)
class Holidays:
    country: str | None  # the public calendar observed
    public: list[tuple[date, str]]
    own: list[HolidayView]


def holidays(scope: Scope, year: int) -> Holidays:
    """The tenant's public holidays of ``year`` (in the caller's language) and its own holidays."""
    tenant = scope.principal.tenant
    h = calendars.TENANT_HOLIDAYS.c
    first, last = date(year, 1, 1), date(year, 12, 31)
    with scope.engine.connect() as conn:
        country = calendars.country_of(conn, tenant)
        own = conn.execute(
            select(h.id, h.day, h.name)
            .where(h.tenant_id == tenant, h.day >= first, h.day <= last)
            .order_by(h.day)
        ).all()
    public = calendars.public_holidays(country, first, last, scope.principal.language)
    return Holidays(country, sorted(public.items()), [HolidayView(i, d, n) for i, d, n in own])


def _tenant_users(s: Session, tenant: str) -> list[int]:
    return list(s.execute(select(col(User.id)).where(col(User.tenant_id) == tenant)).scalars())


def add_holiday(scope: Scope, day: date, name: str, *, source: str, now: float) -> HolidayView:
    """Add one of the tenant's own holidays (administrators only); 409 when that day has one."""
    must_change(scope)
    p = scope.principal
    try:
        name = display_name("name", name)
    except AccountError:
        raise Problem(422, "schedules_bad_holiday_name", most=calendars.MAX_HOLIDAY_NAME) from None
    with Session(scope.engine) as s:
        h = calendars.TENANT_HOLIDAYS.c
        if s.execute(select(h.id).where(h.tenant_id == p.tenant, h.day == day)).first() is not None:
            raise Problem(409, "schedules_holiday_taken", day=str(day))
        row = TenantHoliday(tenant_id=p.tenant, day=day, name=name, created_at=at(now))
        s.add(row)
        try:
            s.flush()
        except IntegrityError:  # added at the same moment by another request
            raise Problem(409, "schedules_holiday_taken", day=str(day)) from None
        assert row.id is not None
        audit(
            s, AuditAction.HOLIDAY_ADD, actor=user_actor(p.user_id), source=source,
            target=f"tenant:{p.tenant}", tenant_id=p.tenant, new={"day": str(day), "name": name},
            holiday=row.id, at=at(now),
        )  # fmt: skip
        mark_dirty(s, p.tenant, _tenant_users(s, p.tenant), day if day <= today_of(scope, now) else None, now)
        s.commit()
        return HolidayView(row.id, day, name)


def remove_holiday(scope: Scope, holiday_id: int, *, source: str, now: float) -> None:
    """Remove one of the tenant's own holidays (administrators only); 404 for another tenant's."""
    p = scope.principal
    with Session(scope.engine) as s:
        row = s.get(TenantHoliday, holiday_id)
        if row is None or row.tenant_id != p.tenant:
            raise Problem(404, "not_found")
        must_change(scope)
        old = {"day": str(row.day), "name": row.name}
        day = row.day
        s.delete(row)
        audit(
            s, AuditAction.HOLIDAY_REMOVE, actor=user_actor(p.user_id), source=source,
            target=f"tenant:{p.tenant}", tenant_id=p.tenant, old=old, holiday=holiday_id, at=at(now),
        )  # fmt: skip
        mark_dirty(s, p.tenant, _tenant_users(s, p.tenant), day if day <= today_of(scope, now) else None, now)
        s.commit()


def set_country(scope: Scope, country: str | None, *, source: str, now: float) -> None:
    """Choose the public holiday calendar the tenant observes (administrators only)."""
    must_change(scope)
    if country is not None and country not in COUNTRIES:
        raise Problem(422, "schedules_bad_country", allowed=", ".join(COUNTRIES))
    p = scope.principal
    with Session(scope.engine) as s:
        with s.no_autoflush:
            old = calendars.country_of(s.connection(), p.tenant)
            row = s.get(HolidayCalendar, p.tenant)
        if row is None:
            s.add(HolidayCalendar(tenant_id=p.tenant, country=country, updated_at=at(now)))
        else:
            row.country, row.updated_at = country, at(now)
        audit(
            s, AuditAction.HOLIDAY_CALENDAR, actor=user_actor(p.user_id), source=source,
            target=f"tenant:{p.tenant}", tenant_id=p.tenant, old={"country": old},
            new={"country": country}, at=at(now),
        )  # fmt: skip
        today = today_of(scope, now)
        mark_dirty(s, p.tenant, _tenant_users(s, p.tenant), today - timedelta(days=RECOMPUTE_DAYS), now)
        s.commit()
