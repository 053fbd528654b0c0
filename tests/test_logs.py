"""Structured logs: one record is one line whatever it carries, and floods are throttled; the log file
rotates and stays private; the terminal gets only what its level lets through."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.logs import LogfmtFormatter, LogThrottle, RotatingLogFile, _value, printable, setup_logging


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


@given(st.text())
def test_printable_text_has_no_control_character_left(text: str) -> None:
    """Whatever arrives, the terminal gets one line without control, format or separator characters."""
    out = printable(text)
    assert "\n" not in out and "\x1b" not in out and "\r" not in out
    assert all(c.isprintable() for c in out)


def test_the_log_file_rotates_past_its_size_and_keeps_its_backups_private(tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1 (.1 to .2); at most `backups` old files; all 0600 in 0700."""
    path = tmp_path / "logs" / "telework.log"
    default = RotatingLogFile(tmp_path / "default.log")
    assert (default.max_bytes, default.backups) == (10 * 2**20, 5)  # the README's 10 MiB, 5 kept
    default.close()
    log_file = RotatingLogFile(path, max_bytes=100, backups=2)
    for n in range(7):
        log_file.write_line(f"line {n} " + "x" * 40)
    log_file.close()
    log_file.write_line("after close")  # dropped, no error
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["telework.log", "telework.log.1", "telework.log.2"]
    assert path.read_text() == "line 6 " + "x" * 40 + "\n"
    assert path.with_name("telework.log.1").read_text().splitlines() == [
        "line 4 " + "x" * 40,
        "line 5 " + "x" * 40,
    ]
    assert {stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()} == {0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_line_break_inside_a_written_line_cannot_make_two(tmp_path: Path) -> None:
    """A line handed to the file with a break inside stays one line."""
    log_file = RotatingLogFile(tmp_path / "t.log")
    log_file.write_line("one\nforged=line")
    log_file.close()
    assert (tmp_path / "t.log").read_text() == "one\\nforged=line\n"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were, after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_terminal_gets_warnings_and_the_file_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restored_logging: None
) -> None:
    """With a console level of WARNING, an INFO record goes to the file only, a warning to both."""
    log_file = RotatingLogFile(tmp_path / "t.log")
    setup_logging("INFO", log_file, console_level="WARNING")
    log = logging.getLogger("tw.test.console")
    log.info("quiet one", extra={"k": 1})
    log.warning("loud one")
    log_file.close()
    err = capsys.readouterr().err
    assert "loud one" in err and "quiet one" not in err
    lines = (tmp_path / "t.log").read_text().splitlines()
    assert [line.split(" msg=")[1] for line in lines] == ['"quiet one" k=1', '"loud one"']


def test_a_web_servers_line_per_connection_is_debug(
    capsys: pytest.CaptureFixture[str], restored_logging: None
) -> None:
    """uvicorn's "[accepted]" and websockets' "connection open" lines are dropped at INFO and kept,
    as DEBUG, at DEBUG; its other lines stay as they are."""
    setup_logging("INFO")
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/v1/agent")
    uvicorn.info("connection open")
    uvicorn.info("Application startup complete.")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "level=info" in err and "startup complete" in err
    setup_logging("DEBUG")
    uvicorn.info("connection closed")
    err = capsys.readouterr().err
    assert "level=debug" in err and 'msg="connection closed"' in err
