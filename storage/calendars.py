"""Work calendars: group schedules, the tenant holiday calendar, and the rule that makes a day's plan.

Tables (user schedules are :class:`storage.planning.Schedule`):

* :class:`GroupSchedule`: weekly patterns and dated exceptions of a group, the same shape as a
  user's ``schedule`` rows; they apply to the group's members;
* :class:`TenantHoliday`: a tenant's own holidays (a company anniversary, year-end closing days);
* :class:`HolidayCalendar`: which built-in public holiday calendar a tenant observes (``JP``, the
  Japanese public holidays of the ``holidays`` package, or none); no row means ``JP`` for a
  tenant in ``Asia/Tokyo`` and none elsewhere (:func:`default_country`).

The rule (:func:`plan_of`, pure), for one user on one local day, first match wins:

1. the user's dated exception of that day (a different time, or a day off without times);
2. a dated exception of one of the user's groups (the lowest group id first);
3. a holiday (public or the tenant's own): a day off;
4. the user's own weekly pattern, when the user has any weekly entry valid on that day (it then
   replaces the group's pattern whole: a weekday it leaves out has no plan);
5. the weekly pattern of the first of the user's groups (lowest id) with an entry valid that day;
6. otherwise no plan.

Within one pattern the first entry (lowest id) for the weekday wins. Times are wall-clock times in
the tenant's time zone; an end not after the start crosses midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Literal

import holidays as holiday_data
from sqlalchemy import Column, Date, Index, Time, UniqueConstraint, select
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from storage.models import Membership, Tenant, tz_column

COUNTRIES = ("JP",)  # built-in public holiday calendars a tenant may observe
DEFAULT_COUNTRY = "JP"
JAPAN_ZONES = frozenset({"Asia/Tokyo", "Japan"})
MAX_HOLIDAY_NAME = 200

Source = Literal["user_exception", "group_exception", "holiday", "user_weekly", "group_weekly"]


class GroupSchedule(SQLModel, table=True):
    """A planned working day of a group's members: weekly (``weekday``) or for one date (``day``).

    The same rules as :class:`storage.planning.Schedule`: exactly one of ``weekday`` and ``day``;
    no times is a day off; ``valid_from`` / ``valid_to`` bound weekly entries (inclusive).
    """

    __tablename__ = "group_schedule"
    __table_args__ = (Index("ix_group_schedule_group", "tenant_id", "group_id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=63)
    group_id: int = Field(foreign_key="tw_group.id")
    weekday: int | None = Field(default=None, ge=0, le=6)
    day: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    start_time: time | None = Field(default=None, sa_column=Column(Time, nullable=True))
    end_time: time | None = Field(default=None, sa_column=Column(Time, nullable=True))
    valid_from: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    valid_to: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    created_at: datetime = Field(sa_column=tz_column())


class TenantHoliday(SQLModel, table=True):
    """A tenant's own holiday: an off day for everyone unless a dated exception says otherwise."""

    __tablename__ = "tenant_holiday"
    __table_args__ = (UniqueConstraint("tenant_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=63)
    day: date = Field(sa_column=Column(Date, nullable=False))
    name: str = Field(max_length=MAX_HOLIDAY_NAME)
    created_at: datetime = Field(sa_column=tz_column())


class HolidayCalendar(SQLModel, table=True):
    """The built-in public holiday calendar a tenant observes (``country`` None: none)."""

    __tablename__ = "holiday_calendar"
    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=63)
    country: str | None = Field(default=None, max_length=8)
    updated_at: datetime = Field(sa_column=tz_column())


@dataclass(frozen=True)
class DayPlan:
    """The plan of one local day and where it came from; ``start`` None is a day off."""

    day: date
    start: time | None
    end: time | None
    source: Source
    holiday: str | None = None  # the holiday's name when ``source`` is ``holiday``


# ---------------------------------------------------------------- pure rules


def entry_problem(
    weekday: int | None,
    day: date | None,
    start: time | None,
    end: time | None,
    valid_from: date | None,
    valid_to: date | None,
) -> tuple[str, str] | None:
    """Pure: (field, what was expected) when these values do not make one schedule entry, else None."""
    if (weekday is None) == (day is None):
        return "weekday", "exactly one of a weekday (weekly pattern) or a date (exception)"
    if weekday is not None and not 0 <= weekday <= 6:
        return "weekday", "a weekday from 0 (Monday) to 6 (Sunday)"
    if (start is None) != (end is None):
        return "end" if end is None else "start", "both a start and an end time, or neither (a day off)"
    if start is not None and start == end:
        return "end", "an end time different from the start time"
    if day is not None and (valid_from is not None or valid_to is not None):
        return "valid_from", "no validity period on a dated exception"
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        return "valid_to", "a date on or after valid_from"
    return None


def _valid_on(row: Mapping[str, Any], day: date) -> bool:
    return (row["valid_from"] is None or row["valid_from"] <= day) and (
        row["valid_to"] is None or day <= row["valid_to"]
    )


@dataclass(frozen=True)
class Pattern:
    """One subject's rows, split: dated exceptions by day (first id wins) and weekly entries by id."""

    dated: Mapping[date, Mapping[str, Any]]
    weekly: Sequence[Mapping[str, Any]]

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]]) -> Pattern:
        dated: dict[date, Mapping[str, Any]] = {}
        weekly: list[Mapping[str, Any]] = []
        for row in sorted(rows, key=lambda r: r["id"] or 0):
            if row["day"] is not None:
                dated.setdefault(row["day"], row)
            elif row["weekday"] is not None:
                weekly.append(row)
        return cls(dated, weekly)

    def covers(self, day: date) -> bool:
        """Whether this pattern has any weekly entry valid on ``day`` (so it decides that day)."""
        return any(_valid_on(w, day) for w in self.weekly)

    def weekly_on(self, day: date) -> Mapping[str, Any] | None:
        return next((w for w in self.weekly if w["weekday"] == day.weekday() and _valid_on(w, day)), None)


def plan_of(
    day: date, own: Pattern, groups: Sequence[Pattern], holidays: Mapping[date, str]
) -> DayPlan | None:
    """Pure: the plan of ``day`` for a user with pattern ``own`` in ``groups`` (lowest id first)."""

    def made(row: Mapping[str, Any], source: Source) -> DayPlan:
        return DayPlan(day, row["start_time"], row["end_time"], source)

    if day in own.dated:
        return made(own.dated[day], "user_exception")
    for group in groups:
        if day in group.dated:
            return made(group.dated[day], "group_exception")
    if day in holidays:
        return DayPlan(day, None, None, "holiday", holidays[day])
    if own.covers(day):
        row = own.weekly_on(day)
        return None if row is None else made(row, "user_weekly")
    for group in groups:
        if group.covers(day):
            row = group.weekly_on(day)
            return None if row is None else made(row, "group_weekly")
    return None


def plans(
    rows: Iterable[Mapping[str, Any]],
    days: Iterable[date],
    group_rows: Sequence[Iterable[Mapping[str, Any]]] = (),
    holidays: Mapping[date, str] | None = None,
) -> dict[date, DayPlan]:
    """Pure: a user's rows, their groups' rows (lowest group id first) and the holidays -> each day's plan."""
    own = Pattern.of(rows)
    groups = [Pattern.of(g) for g in group_rows]
    out: dict[date, DayPlan] = {}
    for day in days:
        plan = plan_of(day, own, groups, holidays or {})
        if plan is not None:
            out[day] = plan
    return out


def public_holidays(country: str | None, first: date, last: date, language: str = "ja") -> dict[date, str]:
    """Pure (the ``holidays`` package's built-in tables): the public holidays from ``first`` to ``last``."""
    if country is None or last < first:
        return {}
    names = holiday_data.country_holidays(
        country, years=range(first.year, last.year + 1), language="ja" if language == "ja" else "en_US"
    )
    return {d: str(n) for d, n in sorted(names.items()) if first <= d <= last}


# ---------------------------------------------------------------------- I/O

GROUP_SCHEDULES = GroupSchedule.__table__  # type: ignore[attr-defined]
TENANT_HOLIDAYS = TenantHoliday.__table__  # type: ignore[attr-defined]
CALENDARS = HolidayCalendar.__table__  # type: ignore[attr-defined]
TENANTS = Tenant.__table__  # type: ignore[attr-defined]


def default_country(time_zone: str | None) -> str | None:
    """Pure: the calendar of a tenant that chose none: Japanese public holidays in Japan's zone."""
    return DEFAULT_COUNTRY if time_zone in JAPAN_ZONES else None


def country_of(conn: Connection, tenant: str) -> str | None:
    """The built-in calendar the tenant observes (its choice, else :func:`default_country`)."""
    row = conn.execute(select(CALENDARS.c.country).where(CALENDARS.c.tenant_id == tenant)).first()
    if row is not None:
        return row[0]  # type: ignore[no-any-return]
    t = TENANTS.c
    zone = conn.execute(select(t.time_zone).where(t.id == tenant)).scalar_one_or_none()
    return default_country(zone)


def holidays_between(
    conn: Connection, tenant: str, first: date, last: date, language: str = "ja"
) -> dict[date, str]:
    """The tenant's off days from ``first`` to ``last``: public ones and its own (its own name wins)."""
    out = public_holidays(country_of(conn, tenant), first, last, language)
    h = TENANT_HOLIDAYS.c
    rows = conn.execute(
        select(h.day, h.name).where(h.tenant_id == tenant, h.day >= first, h.day <= last).order_by(h.day)
    )
    for day, name in rows:
        out[day] = name
    return dict(sorted(out.items()))


def group_rows_of(
    conn: Connection, tenant: str, users: Sequence[int]
) -> dict[int, list[list[Mapping[str, Any]]]]:
    """Each user's groups' schedule rows: one list per group they are a member of, lowest id first."""
    m = Membership.__table__.c  # type: ignore[attr-defined]
    member_of: dict[int, list[int]] = {u: [] for u in users}
    for user_id, group_id in conn.execute(
        select(m.user_id, m.group_id)
        .where(m.tenant_id == tenant, m.role == "member", m.user_id.in_(users))
        .order_by(m.group_id)
    ):
        member_of[user_id].append(group_id)
    groups = sorted({g for gs in member_of.values() for g in gs})
    by_group: dict[int, list[Mapping[str, Any]]] = {g: [] for g in groups}
    if groups:
        g = GROUP_SCHEDULES.c
        query = select(GROUP_SCHEDULES).where(g.tenant_id == tenant, g.group_id.in_(groups))
        for row in conn.execute(query).mappings():
            by_group[row["group_id"]].append(dict(row))
    return {u: [by_group[g] for g in gs] for u, gs in member_of.items()}
