"""The schedule CSV: weekly patterns and dated exceptions of users and groups, parsed and checked. Pure.

UTF-8 with or without a byte order mark (Excel's "CSV UTF-8"), comma separated, CRLF or LF, a
header row naming the columns (any order, any case): ``kind``, ``user``, ``group``, ``weekday``,
``date``, ``start``, ``end``, ``valid_from``, ``valid_to``. ``kind`` and one of ``user`` / ``group``
are required; the others may be left out. Per row:

* ``kind``: ``weekly`` (a weekly pattern entry) or ``exception`` (a dated exception);
* ``user`` (a login) or ``group`` (a group name): exactly one of them;
* ``weekday`` (weekly): ``mon`` .. ``sun``, ``monday`` .. ``sunday``, or ``月`` .. ``日``
  (also ``月曜``, ``月曜日``);
* ``date`` (exception): ``2027-01-20``, ``2027/01/20`` or ``2027/1/20`` (Excel's Japanese format);
* ``start``, ``end``: ``9:00``, ``09:00`` or ``09:00:00``, both or neither (a day off);
* ``valid_from``, ``valid_to`` (weekly, optional): dates as above, inclusive.

Rows are numbered as in a spreadsheet: the header is row 1. Blank rows are skipped. The answer is
either every row parsed or every problem found (:class:`RowError`: row, column, what was
expected, what arrived); the caller stores nothing unless there is no problem at all.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from typing import Literal, TypeVar

from storage.account_rules import refused_character
from storage.calendars import entry_problem

COLUMNS = ("kind", "user", "group", "weekday", "date", "start", "end", "valid_from", "valid_to")
MAX_ERRORS = 100  # problems reported at most (the count of all is given too)
MAX_SHOWN = 40  # characters of an arrived value shown in a problem
MAX_FIELD = 200  # characters of one cell
BOM = "\ufeff"
FIRST_YEAR, LAST_YEAR = 1970, 2100  # the dates a schedule may name (the JSON API's, the CSV's, the pages')
FIRST_DAY, LAST_DAY = date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)

Kind = Literal["weekly", "exception"]
T = TypeVar("T")

WEEKDAYS: dict[str, int] = {}
for _i, (_en, _full, _ja) in enumerate(
    zip(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
        "月火水木金土日",
        strict=True,
    )
):
    WEEKDAYS.update({_en: _i, _full: _i, _ja: _i, f"{_ja}曜": _i, f"{_ja}曜日": _i})
DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class RowError:
    """One problem: spreadsheet row (None: the whole file), column (None: the whole row)."""

    row: int | None
    column: str | None
    expected: str
    got: str


@dataclass(frozen=True)
class Row:
    """One parsed, self-consistent row (names are not yet resolved to ids)."""

    row: int
    kind: Kind
    user: str | None
    group: str | None
    weekday: int | None
    day: date | None
    start: time | None
    end: time | None
    valid_from: date | None
    valid_to: date | None


class Bad(ValueError):
    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def shown(value: str) -> str:
    return value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"


def parse_date(value: str) -> date:
    match = DATE.match(value)
    if match is None:
        raise Bad("a date like 2027-01-20 or 2027/01/20")
    try:
        day = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise Bad("a date that exists, like 2027-01-20") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise Bad(f"a date from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}")
    return day


def parse_time(value: str) -> time:
    match = TIME.match(value)
    if match is None:
        raise Bad("a time like 09:00")
    try:
        return time(int(match[1]), int(match[2]), int(match[3] or 0))
    except ValueError:
        raise Bad("a time from 00:00 to 23:59") from None


def parse_weekday(value: str) -> int:
    found = WEEKDAYS.get(value.lower())
    if found is None:
        raise Bad("a weekday: mon .. sun, or 月 .. 日")
    return found


def decode(data: bytes) -> str:
    """UTF-8 text of ``data`` without a byte order mark; :class:`Bad` when it is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("UTF-8 text (in Excel: save as 'CSV UTF-8')") from None
    return text.removeprefix(BOM)


def header_problems(header: list[str]) -> list[RowError]:
    names = [h.strip().lower() for h in header]
    out = [
        RowError(1, name, "a column among " + ", ".join(COLUMNS), shown(name))
        for name in names
        if name not in COLUMNS
    ]
    out += [
        RowError(1, name, "each column once", name) for name in sorted(set(names)) if names.count(name) > 1
    ]
    if "kind" not in names:
        out.append(RowError(1, "kind", "a kind column", ",".join(shown(n) for n in names)))
    if "user" not in names and "group" not in names:
        out.append(RowError(1, "user", "a user or a group column", ",".join(shown(n) for n in names)))
    return out


def parse_row(number: int, cells: dict[str, str]) -> Row | list[RowError]:
    """Pure: one data row (column -> cell text) -> a :class:`Row`, or its problems."""
    errors: list[RowError] = []

    def cell(name: str) -> str:
        return cells.get(name, "").strip()

    def field(name: str, parse: Callable[[str], T]) -> T | None:
        raw = cell(name)
        if not raw:
            return None
        try:
            return parse(raw)
        except Bad as exc:
            errors.append(RowError(number, name, exc.expected, shown(raw)))
            return None

    for name, value in cells.items():
        if len(value) > MAX_FIELD:
            errors.append(RowError(number, name, f"at most {MAX_FIELD} characters", shown(value)))
    kind_raw = cell("kind").lower()
    if kind_raw not in ("weekly", "exception"):
        errors.append(RowError(number, "kind", "weekly or exception", shown(cell("kind"))))
    user, group = cell("user") or None, cell("group") or None
    for column, named in (("user", user), ("group", group)):
        bad = None if named is None else refused_character(named)
        if bad is not None:
            errors.append(RowError(number, column, "a name without control or invisible characters", bad))
    if (user is None) == (group is None):
        errors.append(RowError(number, "user", "exactly one of user or group", f"{user or ''}|{group or ''}"))
    weekday = field("weekday", parse_weekday)
    day = field("date", parse_date)
    start = field("start", parse_time)
    end = field("end", parse_time)
    valid_from = field("valid_from", parse_date)
    valid_to = field("valid_to", parse_date)
    if errors:
        return errors
    if kind_raw == "weekly" and weekday is None:
        return [RowError(number, "weekday", "a weekday on a weekly row", cell("weekday"))]
    if kind_raw == "weekly" and day is not None:
        return [RowError(number, "date", "no date on a weekly row", cell("date"))]
    if kind_raw == "exception" and day is None:
        return [RowError(number, "date", "a date on an exception row", cell("date"))]
    if kind_raw == "exception" and weekday is not None:
        return [RowError(number, "weekday", "no weekday on an exception row", cell("weekday"))]
    problem = entry_problem(weekday, day, start, end, valid_from, valid_to)
    if problem is not None:
        column = {"day": "date"}.get(problem[0], problem[0])
        return [RowError(number, column, problem[1], cell(column))]
    kind: Kind = "weekly" if kind_raw == "weekly" else "exception"
    return Row(number, kind, user, group, weekday, day, start, end, valid_from, valid_to)


@dataclass(frozen=True)
class Parsed:
    rows: list[Row]
    errors: list[RowError]
    error_count: int  # every problem found (``errors`` holds at most MAX_ERRORS)


def parse(data: bytes, max_rows: int) -> Parsed:
    """Pure: a whole file -> its rows, or its problems (at most :data:`MAX_ERRORS` listed)."""
    try:
        text = decode(data)
    except Bad as exc:
        return Parsed([], [RowError(None, None, exc.expected, "bytes that are not UTF-8")], 1)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return Parsed([], [RowError(None, None, "comma-separated values", shown(str(exc)))], 1)
    if not records or not any(c.strip() for c in records[0]):
        return Parsed([], [RowError(1, None, "a header row: " + ",".join(COLUMNS), "nothing")], 1)
    header = [h.strip().lower() for h in records[0]]
    errors = header_problems(records[0])
    if errors:
        return Parsed([], errors[:MAX_ERRORS], len(errors))
    body = [(n, r) for n, r in enumerate(records[1:], start=2) if any(c.strip() for c in r)]
    if len(body) > max_rows:
        return Parsed([], [RowError(None, None, f"at most {max_rows} rows", f"{len(body)} rows")], 1)
    rows: list[Row] = []
    for number, record in body:
        if len(record) > len(header):
            errors.append(RowError(number, None, f"at most {len(header)} cells", f"{len(record)} cells"))
            continue
        outcome = parse_row(number, dict(zip(header, record, strict=False)))
        if isinstance(outcome, Row):
            rows.append(outcome)
        else:
            errors += outcome
    if not rows and not errors:
        errors.append(RowError(2, None, "at least one data row", "nothing"))
    return Parsed(rows if not errors else [], errors[:MAX_ERRORS], len(errors))
