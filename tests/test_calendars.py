"""Work calendars: the plan rule (exceptions, holidays, user and group patterns), public holidays, and
the daily rollups of a group member and of a Japanese holiday, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage.accounts import create_tenant, create_user
from storage.calendars import (
    GROUP_SCHEDULES,
    TENANT_HOLIDAYS,
    DayPlan,
    default_country,
    entry_problem,
    plans,
    public_holidays,
)
from storage.models import Group, Membership, utcnow
from workers.analytics import ScheduleDay
from workers.analytics_store import DAILY, INTERVALS, SCHEDULES, plan_days, recompute

TOKYO = ZoneInfo("Asia/Tokyo")
MON = date(2027, 1, 4)  # a Monday; 2027-01-11 (Monday) is Coming of Age Day
HOLIDAY = date(2027, 1, 11)
NOW = datetime(2027, 1, 20, tzinfo=UTC)
_ids = iter(range(1, 1_000_000))


def row(**values: Any) -> dict[str, Any]:
    base = {
        "id": next(_ids),
        "weekday": None,
        "day": None,
        "start_time": None,
        "end_time": None,
        "valid_from": None,
        "valid_to": None,
    }
    return {**base, **values}


def weekly(weekday: int, start: int, end: int, **values: Any) -> dict[str, Any]:
    return row(weekday=weekday, start_time=time(start), end_time=time(end), **values)


def test_group_pattern_applies_unless_the_user_has_their_own() -> None:
    """A member without a pattern gets the group's; a user's own pattern replaces it whole."""
    group = [weekly(d, 9, 18) for d in range(5)]
    days = [MON + timedelta(days=i) for i in range(7)]
    assert plans([], days, [group]) == {
        MON + timedelta(days=i): DayPlan(MON + timedelta(days=i), time(9), time(18), "group_weekly")
        for i in range(5)
    }
    own = [weekly(0, 10, 15)]  # Mondays only: the group's Tuesday to Friday no longer apply
    assert plans(own, days, [group]) == {MON: DayPlan(MON, time(10), time(15), "user_weekly")}


def test_own_pattern_outside_its_validity_leaves_the_group_pattern() -> None:
    """A user's pattern valid only from the second week: the first week follows the group."""
    group = [weekly(0, 9, 18)]
    own = [weekly(0, 13, 22, valid_from=MON + timedelta(days=7))]
    found = plans(own, [MON, MON + timedelta(days=7)], [group])
    assert found == {
        MON: DayPlan(MON, time(9), time(18), "group_weekly"),
        MON + timedelta(days=7): DayPlan(MON + timedelta(days=7), time(13), time(22), "user_weekly"),
    }


def test_precedence_user_exception_group_exception_holiday_pattern() -> None:
    """The user's dated exception beats the group's, which beats a holiday, which beats the patterns."""
    tue, wed, thu = MON + timedelta(days=1), MON + timedelta(days=2), MON + timedelta(days=3)
    own = [weekly(d, 9, 18) for d in range(5)] + [row(day=tue, start_time=time(12), end_time=time(20))]
    group = [row(day=tue), row(day=wed, start_time=time(8), end_time=time(12)), row(day=thu)]
    holidays = {wed: "Founding day", thu: "Closing day", MON: "Monday off"}
    found = plans(own, [MON, tue, wed, thu], [group], holidays)
    assert found == {
        MON: DayPlan(MON, None, None, "holiday", "Monday off"),
        tue: DayPlan(tue, time(12), time(20), "user_exception"),
        wed: DayPlan(wed, time(8), time(12), "group_exception"),
        thu: DayPlan(thu, None, None, "group_exception"),
    }


def test_first_group_by_id_wins_and_first_entry_by_id_wins() -> None:
    """Of two groups the first listed (lowest id) decides; within a pattern the lowest entry id."""
    first = [weekly(0, 9, 17), weekly(0, 10, 11)]
    second = [weekly(0, 6, 14)]
    assert plans([], [MON], [first, second]) == {MON: DayPlan(MON, time(9), time(17), "group_weekly")}


def test_plan_days_keeps_its_old_behaviour_for_user_rows_alone() -> None:
    """Without groups or holidays plan_days is what it was: dated entries over weekly ones."""
    rows = [weekly(0, 9, 18), row(day=MON + timedelta(days=7))]
    assert plan_days(rows, [MON, MON + timedelta(days=7)]) == {
        MON: ScheduleDay(MON, time(9), time(18)),
        MON + timedelta(days=7): ScheduleDay(MON + timedelta(days=7)),
    }


def test_japanese_public_holidays_built_in() -> None:
    """The holidays package's Japanese calendar: 2027's January holidays, in Japanese and English."""
    assert public_holidays("JP", date(2027, 1, 1), date(2027, 1, 31)) == {
        date(2027, 1, 1): "元日",
        HOLIDAY: "成人の日",
    }
    assert public_holidays("JP", HOLIDAY, HOLIDAY, "en") == {HOLIDAY: "Coming of Age Day"}
    assert public_holidays(None, date(2027, 1, 1), date(2027, 12, 31)) == {}
    assert default_country("Asia/Tokyo") == "JP"
    assert default_country("UTC") is None


def test_entry_problem_names_the_field_and_what_was_expected() -> None:
    """Each inconsistent entry is refused with its field; consistent ones pass."""
    t9, t18 = time(9), time(18)
    assert entry_problem(0, None, t9, t18, None, None) is None
    assert entry_problem(None, MON, None, None, None, None) is None
    assert entry_problem(0, None, t18, t9, None, None) is None  # crosses midnight
    assert entry_problem(None, None, t9, t18, None, None) == (
        "weekday",
        "exactly one of a weekday (weekly pattern) or a date (exception)",
    )
    assert entry_problem(0, MON, t9, t18, None, None)[0] == "weekday"  # type: ignore[index]
    assert entry_problem(7, None, t9, t18, None, None)[0] == "weekday"  # type: ignore[index]
    assert entry_problem(0, None, t9, None, None, None)[0] == "end"  # type: ignore[index]
    assert entry_problem(0, None, None, t9, None, None)[0] == "start"  # type: ignore[index]
    assert entry_problem(0, None, t9, t9, None, None)[0] == "end"  # type: ignore[index]
    assert entry_problem(None, MON, None, None, MON, None)[0] == "valid_from"  # type: ignore[index]
    assert entry_problem(0, None, t9, t18, MON, MON - timedelta(days=1))[0] == "valid_to"  # type: ignore[index]


# ------------------------------------------------------------------- with a database


def jst(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=TOKYO).astimezone(UTC)


def worked(engine: Engine, tenant: str, user: int, day: date, start: int, end: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(INTERVALS),
            {
                "tenant_id": tenant,
                "agent_id": f"pc-{user}",
                "user_id": user,
                "kind": "duty",
                "value": "on",
                "started_at": jst(day, start),
                "ended_at": jst(day, end),
                "start_event_id": f"e{next(_ids)}",
                "end_event_id": None,
                "closed_by": "event",
            },
        )


def group_with_member(engine: Engine, tenant: str, login: str) -> tuple[int, int]:
    user = create_user(engine, tenant, login, login.title())
    with Session(engine) as s:
        group = Group(tenant_id=tenant, name=f"team-{login}", created_at=utcnow())
        s.add(group)
        s.flush()
        assert group.id is not None
        s.add(
            Membership(group_id=group.id, user_id=user, role="member", tenant_id=tenant, created_at=utcnow())
        )
        s.commit()
        return user, group.id


def group_weekdays(engine: Engine, tenant: str, group: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(GROUP_SCHEDULES),
            [
                {
                    "tenant_id": tenant,
                    "group_id": group,
                    "weekday": d,
                    "start_time": time(9),
                    "end_time": time(18),
                    "created_at": NOW,
                }
                for d in range(5)
            ],
        )


def daily(engine: Engine, tenant: str, user: int) -> dict[date, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(DAILY).where(DAILY.c.tenant_id == tenant, DAILY.c.user_id == user))
        return {r["day"]: dict(r) for r in rows.mappings()}


def test_group_member_rollup_gets_the_group_plan_and_a_japanese_holiday_is_off(engine: Engine) -> None:
    """A member of a group with Mon-Fri 09-18: Monday's rollup is planned (9 h, 1 h late); Coming
    of Age Day (a Monday) is a day off, its work all overtime; an unworked Tuesday is an absence."""
    create_tenant(engine, "acme", "Acme", "Asia/Tokyo")
    user, group = group_with_member(engine, "acme", "hana")
    group_weekdays(engine, "acme", group)
    worked(engine, "acme", user, MON, 10, 18)
    worked(engine, "acme", user, HOLIDAY, 10, 12)
    recompute(engine, "acme", [user], MON, HOLIDAY + timedelta(days=1), NOW)
    days = daily(engine, "acme", user)
    monday = days[MON]
    assert (monday["planned_s"], monday["late_start_s"], monday["worked_s"], monday["overtime_s"]) == (
        9 * 3600,
        3600,
        8 * 3600,
        0,
    )
    holiday = days[HOLIDAY]
    assert (holiday["planned_s"], holiday["worked_s"], holiday["overtime_s"], holiday["absent"]) == (
        0,
        2 * 3600,
        2 * 3600,
        False,
    )
    tuesday = days[MON + timedelta(days=1)]
    assert (tuesday["planned_s"], tuesday["absent"]) == (9 * 3600, True)
    assert HOLIDAY + timedelta(days=1) in days and days[HOLIDAY + timedelta(days=1)]["absent"] is True


def test_tenant_holiday_and_user_exception_in_the_rollup(engine: Engine) -> None:
    """A tenant's own holiday is an off day; a user's dated exception on a public holiday makes it a
    working day again; a tenant outside Japan does not observe Japanese holidays."""
    create_tenant(engine, "acme", "Acme", "Asia/Tokyo")
    create_tenant(engine, "mars", "Mars", "UTC")
    user, group = group_with_member(engine, "acme", "hana")
    other, other_group = group_with_member(engine, "mars", "kai")
    group_weekdays(engine, "acme", group)
    group_weekdays(engine, "mars", other_group)
    wed = MON + timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(
            insert(TENANT_HOLIDAYS), {"tenant_id": "acme", "day": wed, "name": "Founding", "created_at": NOW}
        )
        conn.execute(
            insert(SCHEDULES),
            {
                "tenant_id": "acme",
                "user_id": user,
                "day": HOLIDAY,
                "start_time": time(9),
                "end_time": time(13),
                "created_at": NOW,
            },
        )
    recompute(engine, "acme", [user], MON, HOLIDAY, NOW)
    recompute(engine, "mars", [other], HOLIDAY, HOLIDAY, NOW)
    days = daily(engine, "acme", user)
    assert wed not in days  # a day off nobody worked: nothing to store
    assert (days[HOLIDAY]["planned_s"], days[HOLIDAY]["absent"]) == (4 * 3600, True)
    assert daily(engine, "mars", other)[HOLIDAY]["planned_s"] == 9 * 3600
