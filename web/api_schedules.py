"""The schedules API under ``/api/v1``: users' and groups' entries, a user's plan, holidays, CSV import.

Times are wall-clock times of the tenant's time zone (``HH:MM``), dates ISO (``YYYY-MM-DD``).
Who may do what: :mod:`web.schedules`. A CSV import answers 200 with what was stored, or 422
with the per-row problems and nothing stored (:mod:`web.schedule_import`).
"""

from __future__ import annotations

from datetime import date, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from storage.calendars import MAX_HOLIDAY_NAME
from web import schedules
from web.api import MAX_ID, PREFIX, ErrorOut, Strict
from web.deps import ConsoleDep, ScopeDep, address
from web.schedule_csv import FIRST_YEAR, LAST_YEAR
from web.schedule_import import ImportReport, import_csv
from web.schedules import Entry, EntryView, Kind
from web.scope import Scope

Day = Annotated[date, Field(ge=date(FIRST_YEAR, 1, 1), le=date(LAST_YEAR, 12, 31))]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]

router = APIRouter(
    prefix=PREFIX,
    tags=["schedules"],
    responses={
        401: {"model": ErrorOut, "description": "not signed in"},
        403: {"model": ErrorOut, "description": "not allowed, or CSRF token missing or wrong"},
        404: {"model": ErrorOut, "description": "no such object in the caller's scope"},
    },
)


class EntryBody(Strict):
    """A weekly entry (``weekday`` 0 = Monday .. 6 = Sunday) or a dated exception (``day``)."""

    weekday: int | None = Field(default=None, ge=0, le=6)
    day: Day | None = None
    start: time | None = None
    end: time | None = None
    valid_from: Day | None = None
    valid_to: Day | None = None

    @field_validator("start", "end")
    @classmethod
    def naive(cls, value: time | None) -> time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("a local time without an offset, like 09:00 (the tenant's time zone)")
        return value


class EntryOut(BaseModel):
    id: int
    weekday: int | None
    day: date | None
    start: time | None
    end: time | None
    valid_from: date | None
    valid_to: date | None


class ScheduleOut(BaseModel):
    kind: Literal["user", "group"]
    id: int
    time_zone: str  # the zone of every time
    may_change: bool
    weekly: list[EntryOut]
    exceptions: list[EntryOut]


class PlanDayOut(BaseModel):
    day: date
    start: time | None  # None: a day off
    end: time | None
    source: Literal["user_exception", "group_exception", "holiday", "user_weekly", "group_weekly"]
    holiday: str | None


class PlanOut(BaseModel):
    user_id: int
    time_zone: str
    days: list[PlanDayOut]


class HolidayBody(Strict):
    day: Day
    name: str = Field(min_length=1, max_length=MAX_HOLIDAY_NAME)


class HolidayOut(BaseModel):
    id: int
    day: date
    name: str


class PublicHolidayOut(BaseModel):
    day: date
    name: str


class HolidaysOut(BaseModel):
    year: int
    country: str | None
    public: list[PublicHolidayOut]
    own: list[HolidayOut]


class CalendarBody(Strict):
    country: Literal["JP"] | None


class CalendarOut(BaseModel):
    country: str | None


class RowErrorOut(BaseModel):
    row: int | None  # spreadsheet row (the header is 1); None: the whole file
    column: str | None
    expected: str
    got: str


class ImportOut(BaseModel):
    stored: int
    error_count: int
    errors: list[RowErrorOut]


def entry_out(view: EntryView) -> EntryOut:
    e = view.entry
    return EntryOut(
        id=view.id, weekday=e.weekday, day=e.day, start=e.start, end=e.end,
        valid_from=e.valid_from, valid_to=e.valid_to,
    )  # fmt: skip


def _schedule(scope: Scope, kind: Kind, subject_id: int) -> ScheduleOut:
    who = schedules.subject(scope, kind, subject_id)
    views = schedules.entries(scope, who)
    return ScheduleOut(
        kind=kind,
        id=subject_id,
        time_zone=scope.principal.tenant_time_zone,
        may_change=schedules.may_change(scope),
        weekly=[entry_out(v) for v in views if v.entry.day is None],
        exceptions=[entry_out(v) for v in views if v.entry.day is not None],
    )


def _add(scope: Scope, kind: Kind, subject_id: int, body: EntryBody, source: str, now: float) -> EntryOut:
    who = schedules.subject(scope, kind, subject_id)
    entry = Entry(body.weekday, body.day, body.start, body.end, body.valid_from, body.valid_to)
    return entry_out(schedules.add_entry(scope, who, entry, source=source, now=now))


def _replace(
    scope: Scope, kind: Kind, subject_id: int, entry_id: int, body: EntryBody, source: str, now: float
) -> EntryOut:
    who = schedules.subject(scope, kind, subject_id)
    entry = Entry(body.weekday, body.day, body.start, body.end, body.valid_from, body.valid_to)
    view = schedules.change_entry(scope, who, entry_id, entry, source=source, now=now)
    assert view is not None
    return entry_out(view)


def _remove(scope: Scope, kind: Kind, subject_id: int, entry_id: int, source: str, now: float) -> None:
    who = schedules.subject(scope, kind, subject_id)
    schedules.remove_entry(scope, who, entry_id, source=source, now=now)


UNPROCESSABLE: dict[int | str, dict[str, Any]] = {422: {"model": ErrorOut}}


@router.get("/users/{user_id}/schedule")
async def get_user_schedule(user_id: Id, scope: ScopeDep) -> ScheduleOut:
    """A visible user's own weekly entries and dated exceptions."""
    return await run_in_threadpool(_schedule, scope, "user", user_id)


@router.post("/users/{user_id}/schedule", status_code=201, responses=UNPROCESSABLE)
async def post_user_schedule(
    user_id: Id, body: EntryBody, request: Request, scope: ScopeDep, c: ConsoleDep
) -> EntryOut:
    """Add a weekly entry or a dated exception to a user's schedule (administrators)."""
    return await run_in_threadpool(_add, scope, "user", user_id, body, address(request), c.clock())


@router.put("/users/{user_id}/schedule/{entry_id}", responses=UNPROCESSABLE)
async def put_user_schedule(
    user_id: Id, entry_id: Id, body: EntryBody, request: Request, scope: ScopeDep, c: ConsoleDep
) -> EntryOut:
    """Replace one entry of a user's schedule (administrators; audited old -> new)."""
    return await run_in_threadpool(
        _replace, scope, "user", user_id, entry_id, body, address(request), c.clock()
    )


@router.delete("/users/{user_id}/schedule/{entry_id}", status_code=204)
async def delete_user_schedule(
    user_id: Id, entry_id: Id, request: Request, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Remove one entry of a user's schedule (administrators)."""
    await run_in_threadpool(_remove, scope, "user", user_id, entry_id, address(request), c.clock())
    return Response(status_code=204)


@router.get("/users/{user_id}/plan", responses=UNPROCESSABLE)
async def get_user_plan(
    user_id: Id,
    scope: ScopeDep,
    first: Annotated[date, Query(ge=date(FIRST_YEAR, 1, 1), le=date(LAST_YEAR, 12, 31))],
    last: Annotated[date, Query(ge=date(FIRST_YEAR, 1, 1), le=date(LAST_YEAR, 12, 31))],
) -> PlanOut:
    """A visible user's plan of each day from ``first`` to ``last`` (at most 62 days), with its source."""
    days = await run_in_threadpool(schedules.plan, scope, user_id, first, last)
    return PlanOut(
        user_id=user_id,
        time_zone=scope.principal.tenant_time_zone,
        days=[
            PlanDayOut(day=d.day, start=d.start, end=d.end, source=d.source, holiday=d.holiday) for d in days
        ],
    )


@router.get("/groups/{group_id}/schedule")
async def get_group_schedule(group_id: Id, scope: ScopeDep) -> ScheduleOut:
    """A visible group's weekly pattern and dated exceptions (they apply to its members)."""
    return await run_in_threadpool(_schedule, scope, "group", group_id)


@router.post("/groups/{group_id}/schedule", status_code=201, responses=UNPROCESSABLE)
async def post_group_schedule(
    group_id: Id, body: EntryBody, request: Request, scope: ScopeDep, c: ConsoleDep
) -> EntryOut:
    """Add a weekly entry or a dated exception to a group's schedule (administrators)."""
    return await run_in_threadpool(_add, scope, "group", group_id, body, address(request), c.clock())


@router.put("/groups/{group_id}/schedule/{entry_id}", responses=UNPROCESSABLE)
async def put_group_schedule(
    group_id: Id, entry_id: Id, body: EntryBody, request: Request, scope: ScopeDep, c: ConsoleDep
) -> EntryOut:
    """Replace one entry of a group's schedule (administrators; audited old -> new)."""
    return await run_in_threadpool(
        _replace, scope, "group", group_id, entry_id, body, address(request), c.clock()
    )


@router.delete("/groups/{group_id}/schedule/{entry_id}", status_code=204)
async def delete_group_schedule(
    group_id: Id, entry_id: Id, request: Request, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Remove one entry of a group's schedule (administrators)."""
    await run_in_threadpool(_remove, scope, "group", group_id, entry_id, address(request), c.clock())
    return Response(status_code=204)


@router.get("/holidays")
async def get_holidays(
    scope: ScopeDep, c: ConsoleDep, year: Annotated[int | None, Query(ge=FIRST_YEAR, le=LAST_YEAR)] = None
) -> HolidaysOut:
    """The tenant's public holidays (in the caller's language) and its own holidays of ``year``
    (default: this year)."""
    chosen = year or schedules.today_of(scope, c.clock()).year
    found = await run_in_threadpool(schedules.holidays, scope, chosen)
    return HolidaysOut(
        year=chosen,
        country=found.country,
        public=[PublicHolidayOut(day=d, name=n) for d, n in found.public],
        own=[HolidayOut(id=h.id, day=h.day, name=h.name) for h in found.own],
    )


@router.post("/holidays", status_code=201, responses={409: {"model": ErrorOut}, **UNPROCESSABLE})
async def post_holiday(body: HolidayBody, request: Request, scope: ScopeDep, c: ConsoleDep) -> HolidayOut:
    """Add one of the tenant's own holidays (administrators)."""
    made = await run_in_threadpool(
        lambda: schedules.add_holiday(scope, body.day, body.name, source=address(request), now=c.clock())
    )
    return HolidayOut(id=made.id, day=made.day, name=made.name)


@router.delete("/holidays/{holiday_id}", status_code=204)
async def delete_holiday(holiday_id: Id, request: Request, scope: ScopeDep, c: ConsoleDep) -> Response:
    """Remove one of the tenant's own holidays (administrators)."""
    await run_in_threadpool(
        lambda: schedules.remove_holiday(scope, holiday_id, source=address(request), now=c.clock())
    )
    return Response(status_code=204)


@router.put("/holidays/calendar", responses=UNPROCESSABLE)
async def put_calendar(body: CalendarBody, request: Request, scope: ScopeDep, c: ConsoleDep) -> CalendarOut:
    """Choose the public holiday calendar the tenant observes: ``JP`` or none (administrators)."""
    await run_in_threadpool(
        lambda: schedules.set_country(scope, body.country, source=address(request), now=c.clock())
    )
    return CalendarOut(country=body.country)


def report_out(report: ImportReport) -> ImportOut:
    return ImportOut(
        stored=report.stored,
        error_count=report.error_count,
        errors=[
            RowErrorOut(row=e.row, column=e.column, expected=e.expected, got=e.got) for e in report.errors
        ],
    )


async def read_bounded(upload: UploadFile, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``upload`` (one more than allowed tells it is too large)."""
    return await upload.read(limit + 1)


@router.post("/schedules/import", responses={422: {"model": ImportOut}})
async def post_import(file: UploadFile, request: Request, scope: ScopeDep, c: ConsoleDep) -> ImportOut:
    """Import weekly entries and exceptions from a CSV (administrators): every row stored, or none."""
    settings = c.settings
    schedules.must_change(scope)
    data = await read_bounded(file, settings.web_schedule_csv_max_bytes)
    report = await run_in_threadpool(
        lambda: import_csv(
            scope, data, max_bytes=settings.web_schedule_csv_max_bytes,
            max_rows=settings.web_schedule_csv_max_rows, source=address(request), now=c.clock(),
        )
    )  # fmt: skip
    out = report_out(report)
    if report.error_count:
        return JSONResponse(out.model_dump(mode="json"), status_code=422)  # type: ignore[return-value]
    return out
