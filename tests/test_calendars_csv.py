"""The schedule CSV parser: Excel's usual output, each problem with row, column, expected and got,
bounds, and (hypothesis) any row it is given round-trips or is refused, never a crash."""

from __future__ import annotations

import csv
import io
from datetime import date, time

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.account_rules import INVISIBLE
from web.schedule_csv import COLUMNS, MAX_ERRORS, Row, RowError, parse, parse_row

BOM = "\ufeff"


def test_excel_csv_utf8_with_bom_crlf_japanese_dates_and_weekdays() -> None:
    """Excel's "CSV UTF-8": BOM, CRLF, 2027/1/5 dates, 9:00 times, 月曜日 weekdays, blank rows skipped."""
    text = (
        f"{BOM}Kind,User,Group,Weekday,Date,Start,End,Valid_From,Valid_To\r\n"
        "weekly,wataru,,月曜日,,9:00,18:00,2027/1/4,\r\n"
        "weekly,,sales,Fri,,22:00:00,06:00,,2027-12-31\r\n"
        ",,,,,,,,\r\n"
        "exception,wataru,,,2027/1/11,,,,\r\n"
    )
    parsed = parse(text.encode(), 10)
    assert parsed.errors == [] and parsed.error_count == 0
    assert parsed.rows == [
        Row(2, "weekly", "wataru", None, 0, None, time(9), time(18), date(2027, 1, 4), None),
        Row(3, "weekly", None, "sales", 4, None, time(22), time(6), None, date(2027, 12, 31)),
        Row(5, "exception", "wataru", None, None, date(2027, 1, 11), None, None, None, None),
    ]


def test_without_bom_and_only_the_needed_columns() -> None:
    """No BOM, LF, a header with only kind, user and date: an exception day off."""
    parsed = parse(b"kind,user,date\nexception,wendy,2027-02-01\n", 10)
    assert parsed.rows == [Row(2, "exception", "wendy", None, None, date(2027, 2, 1), None, None, None, None)]


def test_every_problem_is_reported_with_row_column_expected_and_got() -> None:
    """Bad cells of several rows: one RowError each, and no row returned."""
    text = (
        "kind,user,group,weekday,date,start,end\n"
        "weekly,wataru,,funday,,9:00,18:00\n"
        "exception,wataru,,,2027-02-30,,\n"
        "monthly,wataru,,,,,\n"
        "weekly,wataru,sales,mon,,25:00,18:00\n"
        "weekly,wataru,,mon,,9:00,\n"
    )
    parsed = parse(text.encode(), 10)
    assert parsed.rows == []
    assert parsed.errors == [
        RowError(2, "weekday", "a weekday: mon .. sun, or 月 .. 日", "funday"),
        RowError(3, "date", "a date that exists, like 2027-01-20", "2027-02-30"),
        RowError(4, "kind", "weekly or exception", "monthly"),
        RowError(5, "user", "exactly one of user or group", "wataru|sales"),
        RowError(5, "start", "a time from 00:00 to 23:59", "25:00"),
        RowError(6, "end", "both a start and an end time, or neither (a day off)", ""),
    ]
    assert parsed.error_count == 6


def test_names_with_control_characters_are_refused() -> None:
    """A NUL or a right-to-left override in a login or group name is a problem of that cell."""
    parsed = parse(
        "kind,user,group,date\nexception,wa\x00ta,,2027-01-01\nexception,,sa\u202eles,2027-01-01\n".encode(),
        10,
    )
    assert parsed.errors == [
        RowError(2, "user", "a name without control or invisible characters", "U+0000"),
        RowError(3, "group", "a name without control or invisible characters", "U+202E"),
    ]


def test_header_problems_and_file_problems() -> None:
    """Unknown or doubled columns, a missing kind, non-UTF-8 bytes, an empty file, too many rows."""
    assert parse(b"kind,user,colour,user\n", 10).errors == [
        RowError(1, "colour", "a column among " + ", ".join(COLUMNS), "colour"),
        RowError(1, "user", "each column once", "user"),
    ]
    assert parse(b"user,date\n", 10).errors == [RowError(1, "kind", "a kind column", "user,date")]
    assert parse("kind,user\nweekly,渡\n".encode("cp932"), 10).errors == [
        RowError(None, None, "UTF-8 text (in Excel: save as 'CSV UTF-8')", "bytes that are not UTF-8")
    ]
    assert parse(b"", 10).errors[0].row == 1
    assert parse(b"kind,user\n", 10).errors == [RowError(2, None, "at least one data row", "nothing")]
    many = "kind,user,date\n" + "exception,w,2027-01-01\n" * 4
    assert parse(many.encode(), 3).errors == [RowError(None, None, "at most 3 rows", "4 rows")]
    assert parse(b"kind,user\nweekly,w,extra\n", 10).errors == [
        RowError(2, None, "at most 2 cells", "3 cells")
    ]


def test_errors_listed_are_bounded_but_all_are_counted() -> None:
    """Of 150 bad rows, MAX_ERRORS are listed and all 150 counted."""
    text = "kind,user\n" + "nope,w\n" * 150
    parsed = parse(text.encode(), 1000)
    assert (len(parsed.errors), parsed.error_count) == (MAX_ERRORS, 150)


DAYS = st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31))
TIMES = st.times().map(lambda t: t.replace(microsecond=0))
NAMES = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co", "Cn", "Cf", "Zs", "Zl", "Zp")).filter(
        lambda c: c not in INVISIBLE
    ),
    min_size=1,
    max_size=20,
)
WEEKDAY_SPELLINGS = [
    ("mon", "Monday", "月", "月曜日"),
    ("tue", "TUESDAY", "火", "火曜"),
    ("wed", "wednesday", "水", "水曜日"),
    ("thu", "Thu", "木", "木曜"),
    ("fri", "friday", "金", "金曜日"),
    ("sat", "Sat", "土", "土曜"),
    ("sun", "sunday", "日", "日曜日"),
]


def date_text(day: date, style: int) -> str:
    return [day.isoformat(), day.strftime("%Y/%m/%d"), f"{day.year}/{day.month}/{day.day}"][style]


def time_text(value: time, style: int) -> str:
    return [value.strftime("%H:%M:%S"), f"{value.hour}:{value.minute:02d}:{value.second:02d}"][style]


@st.composite
def rows(draw: st.DrawFn) -> tuple[dict[str, str], Row]:
    """A valid row, spelled in any accepted way, and what it must parse to."""
    kind = draw(st.sampled_from(["weekly", "exception"]))
    name = draw(NAMES)
    as_user = draw(st.booleans())
    off = draw(st.booleans())
    start, end = (None, None) if off else (draw(TIMES), draw(TIMES))
    if start is not None and start == end:
        end = None if end is None else time((end.hour + 1) % 24, end.minute, end.second)
    weekday = draw(st.integers(0, 6)) if kind == "weekly" else None
    day = draw(DAYS) if kind == "exception" else None
    bounds = sorted(draw(st.lists(DAYS, min_size=2, max_size=2))) if kind == "weekly" else [None, None]
    valid_from = bounds[0] if draw(st.booleans()) else None
    valid_to = bounds[1] if draw(st.booleans()) else None
    ds, ts = draw(st.integers(0, 2)), draw(st.integers(0, 1))
    cells = {
        "kind": draw(st.sampled_from([kind, kind.upper(), f" {kind} "])),
        "user": name if as_user else "",
        "group": "" if as_user else name,
        "weekday": "" if weekday is None else draw(st.sampled_from(WEEKDAY_SPELLINGS[weekday])),
        "date": "" if day is None else date_text(day, ds),
        "start": "" if start is None else time_text(start, ts),
        "end": "" if end is None else time_text(end, ts),
        "valid_from": "" if valid_from is None else date_text(valid_from, ds),
        "valid_to": "" if valid_to is None else date_text(valid_to, ds),
    }
    user, group = (name.strip(), None) if as_user else (None, name.strip())
    expected = Row(2, kind, user, group, weekday, day, start, end, valid_from, valid_to)  # type: ignore[arg-type]
    return cells, expected


@given(rows(), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_valid_row_round_trips_through_a_csv_file(case: tuple[dict[str, str], Row], bom: bool) -> None:
    """A valid row written by the csv module (quoting as needed) parses back to exactly its values."""
    cells, expected = case
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerow([cells[c] for c in COLUMNS])
    parsed = parse(((BOM if bom else "") + out.getvalue()).encode(), 10)
    assert parsed.errors == []
    assert parsed.rows == [expected]


@given(st.dictionaries(st.sampled_from(COLUMNS), st.text(max_size=30)))
@settings(max_examples=500, deadline=None)
def test_any_cells_give_a_row_or_problems_never_a_crash(cells: dict[str, str]) -> None:
    """Arbitrary cell texts: a Row, or RowErrors on that row naming known columns."""
    outcome = parse_row(7, cells)
    if isinstance(outcome, Row):
        assert outcome.kind in ("weekly", "exception")
        assert (outcome.user is None) != (outcome.group is None)
    else:
        assert outcome and all(e.row == 7 and e.column in COLUMNS for e in outcome)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_rows_or_problems(data: bytes) -> None:
    """Arbitrary bytes never raise: rows, or at least one problem and no rows."""
    parsed = parse(data, 50)
    assert (parsed.rows == []) == (parsed.error_count > 0)
