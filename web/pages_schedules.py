"""The console's schedule pages: the list, a user's or a group's schedule, holidays, the CSV import.

Who may do what: :mod:`web.schedules` (administrators change, managers and workers read what is
in their scope). Every change is a POST with the CSRF field, answered by a redirect to the page
(post/redirect/get); a bad value re-shows the page with the problem (422).
"""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from web import schedules
from web.api import MAX_ID
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.i18n import text
from web.pages import lang_of, render
from web.schedule_csv import FIRST_YEAR, LAST_YEAR, Bad, parse_date, parse_time
from web.schedule_import import import_csv
from web.schedules import Entry, Kind
from web.scope import Scope

PLAN_DAYS = 14  # days of the plan shown on a user's page
FormText = Annotated[str, Form(max_length=200)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]

router = APIRouter(include_in_schema=False)


@router.get("/schedules")
async def schedules_page(request: Request, who: CallerDep, scope: ScopeDep) -> HTMLResponse:
    users = await run_in_threadpool(scope.users, "", 200, 0)
    groups = await run_in_threadpool(schedules.groups, scope)
    return render(
        "schedules.html", lang_of(request, who), who=who, users=users, groups=groups,
        may_change=schedules.may_change(scope),
    )  # fmt: skip


def _entry_form(kind: str, weekday: str, day: str, start: str, end: str, vfrom: str, vto: str) -> Entry:
    """Pure: the form's fields -> an entry; :class:`Bad` naming the first field that is wrong."""

    def opt_date(name: str, value: str) -> date | None:
        try:
            return parse_date(value.strip()) if value.strip() else None
        except Bad as exc:
            raise Bad(f"{name}: {exc.expected}") from None

    def opt_time(name: str, value: str) -> time | None:
        try:
            return parse_time(value.strip()) if value.strip() else None
        except Bad as exc:
            raise Bad(f"{name}: {exc.expected}") from None

    if kind == "weekly":
        if not weekday.isdigit() or not 0 <= int(weekday) <= 6:
            raise Bad("weekday: a weekday from 0 (Monday) to 6 (Sunday)")
        entry = Entry(
            weekday=int(weekday), start=opt_time("start", start), end=opt_time("end", end),
            valid_from=opt_date("valid_from", vfrom), valid_to=opt_date("valid_to", vto),
        )  # fmt: skip
    elif kind == "exception":
        entry = Entry(day=opt_date("date", day), start=opt_time("start", start), end=opt_time("end", end))
        if entry.day is None:
            raise Bad("date: a date like 2027-01-20")
    else:
        raise Bad("kind: weekly or exception")
    return entry


def _subject_page(
    request: Request, who: Caller, scope: Scope, kind: Kind, subject_id: int, status: int = 200, **extra: Any
) -> HTMLResponse:
    lang = lang_of(request, who)
    subject = schedules.subject(scope, kind, subject_id)
    views = schedules.entries(scope, subject)
    plan: list[Any] = []
    if kind == "user":
        today = schedules.today_of(scope, _now(request))
        plan = schedules.plan(scope, subject_id, today, today + timedelta(days=PLAN_DAYS - 1))
    notice = None
    if request.query_params.get("added"):
        notice = text("schedules_added", lang)
    elif request.query_params.get("removed"):
        notice = text("schedules_removed", lang)
    return render(
        "schedule.html", lang, status=status, who=who, subject=subject,
        weekly=[v for v in views if v.entry.day is None], exceptions=[v for v in views if v.entry.day],
        plan=plan, plan_days=PLAN_DAYS, may_change=schedules.may_change(scope),
        zone=scope.principal.tenant_time_zone, notice=notice, **extra,
    )  # fmt: skip


def _now(request: Request) -> float:
    now: float = request.app.state.console.clock()
    return now


def _base(kind: Kind, subject_id: int) -> str:
    return f"/schedules/{kind}s/{subject_id}"


async def _show(request: Request, who: Caller, scope: Scope, kind: Kind, subject_id: int) -> HTMLResponse:
    return await run_in_threadpool(lambda: _subject_page(request, who, scope, kind, subject_id))


async def _add(
    request: Request, who: Caller, scope: Scope, kind: Kind, subject_id: int, fields: tuple[str, ...]
) -> Response:
    lang = lang_of(request, who)

    def work() -> Response:
        subject = schedules.subject(scope, kind, subject_id)
        schedules.must_change(scope)
        try:
            entry = _entry_form(*fields)
            schedules.add_entry(scope, subject, entry, source=address(request), now=_now(request))
        except Bad as exc:
            return _subject_page(request, who, scope, kind, subject_id, 422, error=exc.expected)
        except Problem as problem:
            if problem.status != 422:
                raise
            error = text(problem.code, lang, **problem.facts)
            return _subject_page(request, who, scope, kind, subject_id, 422, error=error)
        return RedirectResponse(_base(kind, subject_id) + "?added=1", status_code=303)

    return await run_in_threadpool(work)


async def _remove(request: Request, scope: Scope, kind: Kind, subject_id: int, entry_id: int) -> Response:
    def work() -> None:
        subject = schedules.subject(scope, kind, subject_id)
        schedules.remove_entry(scope, subject, entry_id, source=address(request), now=_now(request))

    await run_in_threadpool(work)
    return RedirectResponse(_base(kind, subject_id) + "?removed=1", status_code=303)


@router.get("/schedules/users/{user_id}")
async def user_schedule_page(request: Request, who: CallerDep, scope: ScopeDep, user_id: Id) -> HTMLResponse:
    return await _show(request, who, scope, "user", user_id)


@router.get("/schedules/groups/{group_id}")
async def group_schedule_page(
    request: Request, who: CallerDep, scope: ScopeDep, group_id: Id
) -> HTMLResponse:
    return await _show(request, who, scope, "group", group_id)


@router.post("/schedules/users/{user_id}")
async def user_schedule_form(
    request: Request, who: CallerDep, scope: ScopeDep, user_id: Id, kind: FormText = "",
    weekday: FormText = "", day: FormText = "", start: FormText = "", end: FormText = "",
    valid_from: FormText = "", valid_to: FormText = "", csrf: FormText = "",
) -> Response:  # fmt: skip
    fields = (kind, weekday, day, start, end, valid_from, valid_to)
    return await _add(request, who, scope, "user", user_id, fields)


@router.post("/schedules/groups/{group_id}")
async def group_schedule_form(
    request: Request, who: CallerDep, scope: ScopeDep, group_id: Id, kind: FormText = "",
    weekday: FormText = "", day: FormText = "", start: FormText = "", end: FormText = "",
    valid_from: FormText = "", valid_to: FormText = "", csrf: FormText = "",
) -> Response:  # fmt: skip
    fields = (kind, weekday, day, start, end, valid_from, valid_to)
    return await _add(request, who, scope, "group", group_id, fields)


@router.post("/schedules/users/{user_id}/{entry_id}/delete")
async def user_schedule_remove(
    request: Request, who: CallerDep, scope: ScopeDep, user_id: Id, entry_id: Id, csrf: FormText = ""
) -> Response:
    return await _remove(request, scope, "user", user_id, entry_id)


@router.post("/schedules/groups/{group_id}/{entry_id}/delete")
async def group_schedule_remove(
    request: Request, who: CallerDep, scope: ScopeDep, group_id: Id, entry_id: Id, csrf: FormText = ""
) -> Response:
    return await _remove(request, scope, "group", group_id, entry_id)


# ---------------------------------------------------------------- holidays


def _holidays_page(
    request: Request, who: Caller, scope: Scope, year: int | None, status: int = 200, **extra: Any
) -> HTMLResponse:
    lang = lang_of(request, who)
    chosen = year or schedules.today_of(scope, _now(request)).year
    found = schedules.holidays(scope, chosen)
    notice = text("saved", lang) if request.query_params.get("saved") else None
    return render(
        "holidays.html", lang, status=status, who=who, year=chosen, found=found,
        may_change=schedules.may_change(scope), first_year=FIRST_YEAR, last_year=LAST_YEAR,
        notice=notice, **extra,
    )  # fmt: skip


@router.get("/holidays")
async def holidays_page(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    year: Annotated[int | None, Query(ge=FIRST_YEAR, le=LAST_YEAR)] = None,
) -> HTMLResponse:
    return await run_in_threadpool(lambda: _holidays_page(request, who, scope, year))


@router.post("/holidays")
async def holiday_form(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    day: FormText = "",
    name: FormText = "",
    csrf: FormText = "",
) -> Response:
    lang = lang_of(request, who)

    def work() -> Response:
        schedules.must_change(scope)
        try:
            when = parse_date(day.strip())
            if not FIRST_YEAR <= when.year <= LAST_YEAR:
                raise Bad(f"a date from {FIRST_YEAR} to {LAST_YEAR}")
            schedules.add_holiday(scope, when, name, source=address(request), now=_now(request))
        except Bad as exc:
            return _holidays_page(
                request, who, scope, None, 422, error=f"{text('schedules_date', lang)}: {exc.expected}"
            )
        except Problem as problem:
            if problem.status not in (409, 422):
                raise
            error = text(problem.code, lang, **problem.facts)
            return _holidays_page(request, who, scope, None, problem.status, error=error)
        return RedirectResponse(f"/holidays?year={when.year}&saved=1", status_code=303)

    return await run_in_threadpool(work)


@router.post("/holidays/{holiday_id}/delete")
async def holiday_remove(
    request: Request, who: CallerDep, scope: ScopeDep, holiday_id: Id, csrf: FormText = ""
) -> Response:
    await run_in_threadpool(
        lambda: schedules.remove_holiday(scope, holiday_id, source=address(request), now=_now(request))
    )
    return RedirectResponse("/holidays?saved=1", status_code=303)


@router.post("/holidays/calendar")
async def calendar_form(
    request: Request, who: CallerDep, scope: ScopeDep, country: FormText = "", csrf: FormText = ""
) -> Response:
    chosen = country or None
    await run_in_threadpool(
        lambda: schedules.set_country(scope, chosen, source=address(request), now=_now(request))
    )
    return RedirectResponse("/holidays?saved=1", status_code=303)


# ---------------------------------------------------------------- CSV import


@router.get("/schedules/import")
async def import_page(request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep) -> HTMLResponse:
    schedules.must_change(scope)
    return render("schedule_import.html", lang_of(request, who), who=who, settings=c.settings, report=None)


@router.post("/schedules/import")
async def import_form(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    file: Annotated[UploadFile | None, File()] = None,
    csrf: FormText = "",
) -> HTMLResponse:
    schedules.must_change(scope)
    lang = lang_of(request, who)
    settings = c.settings
    if file is None:
        return render(
            "schedule_import.html", lang, status=422, who=who, settings=settings, report=None,
            error=text("schedules_no_file", lang),
        )  # fmt: skip
    data = await file.read(settings.web_schedule_csv_max_bytes + 1)
    report = await run_in_threadpool(
        lambda: import_csv(
            scope, data, max_bytes=settings.web_schedule_csv_max_bytes,
            max_rows=settings.web_schedule_csv_max_rows, source=address(request), now=c.clock(),
        )
    )  # fmt: skip
    if report.error_count:
        error = text("schedules_import_failed", lang, count=report.error_count)
        return render(
            "schedule_import.html", lang, status=422, who=who, settings=settings, report=report, error=error
        )
    notice = text("schedules_imported", lang, count=report.stored)
    return render("schedule_import.html", lang, who=who, settings=settings, report=report, notice=notice)
