"""Structured logs: one record is one line whatever it carries, and floods are throttled. Pure."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from core.logs import LogfmtFormatter, LogThrottle, _value


def line_of(msg: str, **extra: object) -> str:
    record = logging.LogRecord("tw.test", logging.INFO, "x.py", 1, msg, None, None)
    record.__dict__.update(extra)
    return LogfmtFormatter().format(record)


def test_plain_values_stay_bare_and_others_are_quoted() -> None:
    """Plain printable values are bare; spaces, quotes, '=' and backslashes are quoted and escaped."""
    assert [_value(v) for v in ("abc", 42, "日本語", "")] == ["abc", "42", "日本語", '""']
    assert _value('say "hi" = x') == '"say \\"hi\\" = x"'
    assert _value("C:\\temp") == '"C:\\\\temp"'


def test_every_control_character_is_escaped() -> None:
    """CR, LF, tab, ESC, NUL, C1, U+2028/2029, bidi overrides and lone surrogates become visible escapes."""
    assert _value("a\rb") == '"a\\rb"'
    assert _value("a\nb\tc") == '"a\\nb\\tc"'
    assert _value("\x1b[31mred") == '"\\x1b[31mred"'
    assert _value("nul\x00") == '"nul\\x00"'
    assert _value("next\x85line") == '"next\\x85line"'
    assert _value("a\u2028b\u2029c") == '"a\\u2028b\\u2029c"'
    assert _value("\u202etxt.exe") == '"\\u202etxt.exe"'
    assert _value("\ud800") == '"\\ud800"'
    assert _value("\U000e0001tag") == '"\\U000e0001tag"'


def test_a_forged_line_in_the_message_or_a_field_stays_on_one_line() -> None:
    """A message and a field carrying CR/LF and a fake record are escaped: the record is one line."""
    forged = "bad\r\nts=2025-01-01 level=error msg=forged"
    line = line_of(f"unknown frame type {forged}", field=forged)
    assert line.splitlines() == [line]
    assert 'msg="unknown frame type bad\\r\\nts=2025-01-01 level=error msg=forged"' in line
    assert line.endswith(' field="bad\\r\\nts=2025-01-01 level=error msg=forged"')


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp", "Zs", "L", "P"])), st.text())
def test_any_text_makes_exactly_one_printable_line(msg: str, field: str) -> None:
    """For any message and field text (surrogates included) the record is one line of printable characters."""
    line = line_of(msg, field=field)
    assert line.isprintable()
    line.encode("utf-8")  # writable to a UTF-8 stderr: no lone surrogate left


def test_throttle_admits_one_line_per_key_per_window_then_counts() -> None:
    """First line admitted; repeats within the window dropped; the next one after it carries the count."""
    now = [100.0]
    throttle = LogThrottle(10.0, clock=lambda: now[0])
    assert throttle.admit("bad_hello") == 0
    now[0] = 105.0
    assert [throttle.admit("bad_hello") for _ in range(3)] == [None, None, None]
    assert throttle.admit("invalid agent token") == 0  # another reason has its own window
    now[0] = 110.0
    assert throttle.admit("bad_hello") == 3
    assert throttle.admit("bad_hello") is None
    now[0] = 125.0
    assert throttle.admit("bad_hello") == 1


def test_throttle_keys_are_bounded() -> None:
    """Beyond max_keys distinct keys, new ones share the key 'other'."""
    throttle = LogThrottle(10.0, clock=lambda: 0.0, max_keys=2)
    assert [throttle.admit(k) for k in ("a", "b", "c", "d")] == [0, 0, 0, None]
