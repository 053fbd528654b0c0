"""Pure parts of the audit trail and the account rules: old -> new, withheld fields, no tokens, the checks
of ids, logins, names and time zones (properties), plain tables, the face-erase moment."""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.logs import printable
from storage import account_rules as rules
from storage.account_changes import face_erase_at, tenant_values, user_values
from storage.account_rules import AccountError
from storage.audit_trail import AuditAction, changes, detail
from telework.cli_base import table, width
from workers.retention import RetentionPolicy, face_erase_due

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REFUSED = st.characters(categories=["Cc", "Cs", "Co"]) | st.sampled_from(sorted(rules.INVISIBLE))


def test_changes_keep_only_what_differs_and_withhold_identifying_values() -> None:
    """Unchanged fields are left out, a missing side is None, withheld fields are named, never valued."""
    old = {"name": "Aiko", "role": "worker", "language": "ja", "enabled": True}
    new = {"name": "Aiko S", "role": "manager", "language": "ja", "time_zone": "UTC"}
    assert changes(old, new, withheld=("name",)) == (
        {"enabled": [True, None], "role": ["worker", "manager"], "time_zone": [None, "UTC"]},
        ["name"],
    )
    assert changes({"name": "A"}, {"name": "A"}, withheld=("name",)) == ({}, [])


def test_detail_puts_source_changes_and_facts_in_one_shape() -> None:
    """detail: source first, then changes (and withheld when any), then the facts; no changes part without
    old/new; a fact may not take a reserved key."""
    assert detail("cli:root", {}, {"name": "x", "time_zone": "UTC"}, withheld=("name",), level="tenant") == {
        "source": "cli:root",
        "changes": {"time_zone": [None, "UTC"]},
        "withheld": ["name"],
        "level": "tenant",
    }
    assert detail("10.0.0.7", rows=3) == {"source": "10.0.0.7", "rows": 3}
    forged: dict[str, Any] = {"changes": {"role": ["admin", "worker"]}}
    with pytest.raises(ValueError, match=r"^audit detail: 'changes' is reserved, got it as a fact$"):
        detail("cli:root", {}, {"role": "admin"}, **forged)


@pytest.mark.parametrize(
    "facts",
    [
        {"token": "abc"},
        {"extra": {"token_hash": "00"}},
        {"issued": "twa_abcdef"},
        {"issued": ["ok", ("twa_abcdef",)]},
    ],
    ids=["token key", "nested hash key", "token value", "token in a list"],
)
def test_detail_refuses_anything_like_a_token(facts: dict[str, Any]) -> None:
    """A token (its prefix) or a token/token_hash key anywhere in the detail is refused before it is
    written."""
    with pytest.raises(ValueError, match=r"^audit detail(\.\w+)*: expected no"):
        detail("cli:root", **facts)


def test_the_vocabulary_is_object_dot_verb_and_unique() -> None:
    """Every action is lowercase ``object.verb[.step]`` and defined once."""
    values = [str(a) for a in AuditAction]
    assert len(values) == len(set(values))
    assert all(v.count(".") in (1, 2) and v == v.lower() and " " not in v for v in values)


# ------------------------------------------------------------------ rules


@given(
    st.text(alphabet=st.characters(categories=["L", "N", "P", "S"]), max_size=20), REFUSED, st.integers(0, 20)
)
def test_a_name_or_login_with_a_refused_character_is_refused(text: str, bad: str, at: int) -> None:
    """Whatever the text, one control, surrogate, private or invisible character inside it makes it
    refused, naming the character's code point."""
    value = "a" + text[:at] + bad + text[at:] + "z"
    code = f"U+{ord(bad):04X}"
    for check in (lambda v: rules.display_name("name", v), rules.login):
        with pytest.raises(AccountError, match=re.escape(f"expected no control characters, got {code} in")):
            check(value)


@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=120))
def test_printable_logins_are_kept_as_given(value: str) -> None:
    """Letters, digits, punctuation and symbols up to 120 characters are a login, unchanged."""
    assert rules.login(value) == value


@given(st.sampled_from(sorted(zoneinfo.available_timezones() - rules.NOT_ZONES)))
def test_every_zone_of_the_database_is_accepted(zone: str) -> None:
    """Each IANA name the zone database holds is a time zone (returned as given)."""
    assert rules.time_zone(zone) == zone


@given(st.text(max_size=80))
def test_anything_else_is_not_a_time_zone(text: str) -> None:
    """A text that is not a zone name is refused with its value; paths and case variants included."""
    if text in zoneinfo.available_timezones() and text not in rules.NOT_ZONES:
        return
    with pytest.raises(AccountError, match=r"^time zone: expected an IANA time zone name"):
        rules.time_zone(text)


@pytest.mark.parametrize(
    "value", ["asia/tokyo", "localtime", "../../etc/passwd", "/usr/share/zoneinfo/UTC", ""]
)
def test_near_misses_are_not_time_zones(value: str) -> None:
    """Wrong case, the host's localtime file, paths and the empty text are refused."""
    with pytest.raises(AccountError, match="time zone: expected an IANA time zone name"):
        rules.time_zone(value)


def test_update_values_refuse_wrong_types_and_unknown_fields() -> None:
    """A number as a name, a text as enabled, an unknown field: each refused naming what arrived."""
    with pytest.raises(AccountError, match=r"^name: expected text, got int 5$"):
        user_values({"name": 5})
    with pytest.raises(AccountError, match=r"^enabled: expected true or false, got 'yes'$"):
        user_values({"enabled": "yes"})
    with pytest.raises(AccountError, match=r"^user: expected fields .*, got password_hash$"):
        user_values({"password_hash": "x"})
    with pytest.raises(AccountError, match=r"^tenant: expected fields name, time_zone, got id$"):
        tenant_values({"id": "other"})
    assert user_values({"time_zone": None, "name": " Ken "}) == {"time_zone": None, "name": "Ken"}


def test_face_erase_at_is_the_moment_retention_erases() -> None:
    """The moment reinstating stops is the first at which the retention job's rule erases the faces."""
    policy = RetentionPolicy(terminated_erase_days=30)
    at = face_erase_at(T0, 30)
    assert at == T0 + timedelta(days=30)
    assert face_erase_due(T0, at, policy) is True
    assert face_erase_due(T0, at - timedelta(microseconds=1), policy) is False
    assert face_erase_at(T0.replace(tzinfo=None), 0) == T0  # a naive stored time is UTC


# ------------------------------------------------------------------ tables


def test_table_aligns_wide_characters_and_escapes_controls() -> None:
    """Columns line up on a terminal with Japanese names; a control character is shown escaped."""
    assert table(("ID", "NAME"), [("acme", "Acme"), ("jp", "日本商事"), ("x", "a\x1b[2Jb")]) == [
        "ID    NAME",
        "acme  Acme",
        "jp    日本商事",
        "x     a\\x1b[2Jb",
    ]
    assert width("日本a") == 5
    assert printable("A\u202eB\nC") == "A\\u202eB\\nC"


@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=6))
def test_table_lines_are_single_and_columns_start_together(rows: list[tuple[str, str]]) -> None:
    """Whatever the cells hold, each row is one line without control characters, and the second column
    starts at the same terminal column on every line."""
    lines = table(("A", "B"), rows)
    column = max(width(printable(c, spaces=True)) for c in ["A", *(first for first, _ in rows)]) + 2
    for line, (first, second) in zip(lines, [("A", "B"), *rows], strict=True):
        cell = printable(first, spaces=True)
        assert line == (cell + " " * (column - width(cell)) + printable(second, spaces=True)).rstrip()
        assert all(unicodedata.category(ch)[0] != "C" for ch in line)


def test_a_huge_time_zone_is_refused_by_its_length_not_echoed() -> None:
    """A 100,000-character time zone: the error gives its length, not the value; an unknown short one
    is quoted."""
    with pytest.raises(AccountError) as huge:
        rules.time_zone("A" * 100_000)
    assert str(huge.value) == (
        "time zone: expected an IANA time zone name such as Asia/Tokyo or UTC, got 100000 characters"
    )
    with pytest.raises(AccountError, match=r"got 'Mars/Olympus'$"):
        rules.time_zone("Mars/Olympus")
