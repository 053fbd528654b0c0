"""What `up` shows at its terminal: warnings, errors and stray output of its children (never their
info lines, unless --verbose), every line in the log file under the child's name, and the banner."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from core.logs import RotatingLogFile
from telework.console import (
    Banner,
    banner_lines,
    file_line,
    line_level,
    on_terminal,
    progress_line,
    relay,
    terminal_line,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INFO = 'ts=2026-12-01T12:00:00.000+00:00 level=info logger=uvicorn.error msg="connection open"'
WARNING = 'ts=2026-12-01T12:00:00.000+00:00 level=warning logger=agent.desk msg="punch refused"'


def test_the_level_of_a_line_is_its_records_or_none() -> None:
    """logfmt and logging's default format carry a level; a traceback line or a print does not."""
    assert line_level(INFO) == "info"
    assert line_level(WARNING) == "warning"
    assert line_level("INFO:bokeh.server.server:Starting Bokeh server") == "info"
    assert line_level("ERROR:tornado.application:Uncaught exception") == "error"
    assert line_level("Traceback (most recent call last):") is None
    assert line_level("level=info but not a record") is None


def test_only_warnings_errors_and_stray_output_reach_the_terminal() -> None:
    """Without --verbose: warning, error, critical and lines that are no record; with it: all."""
    shown = [
        lvl for lvl in ("debug", "info", "warning", "error", "critical", None) if on_terminal(lvl, False)
    ]
    assert shown == ["warning", "error", "critical", None]
    assert all(on_terminal(lvl, True) for lvl in ("debug", "info", None))


def test_a_childs_line_is_filed_under_its_name() -> None:
    """A record gets proc=NAME; other output becomes a record of logger=output with the text quoted."""
    assert file_line("gateway", INFO, "info", NOW) == INFO + " proc=gateway"
    assert file_line("dashboard", 'INFO:bokeh:say "hi"', "info", NOW) == (
        'ts=2026-12-01T12:00:00.000+00:00 level=info logger=output msg="INFO:bokeh:say \\"hi\\"" '
        "proc=dashboard"
    )
    assert file_line("worker-1", "Traceback (most recent call last):", None, NOW) == (
        "ts=2026-12-01T12:00:00.000+00:00 level=info logger=output "
        'msg="Traceback (most recent call last):" proc=worker-1'
    )


@given(st.text(max_size=200), st.sampled_from(["info", "warning", None]))
def test_any_output_makes_one_printable_line_in_the_file_and_on_the_terminal(
    text: str, level: str | None
) -> None:
    """Whatever a child prints (escapes, line breaks, bidi controls), each side gets one printable line."""
    for out in (file_line("worker-1", text, level, NOW), terminal_line("worker-1", text)):
        assert all(c.isprintable() for c in out)


def test_progress_and_banner_lines() -> None:
    """One aligned line per process; the banner names the live page's tenant, the web console, the
    data folder, the log, the demo's page, how to stop; without a tenant it says how to create one."""
    assert progress_line("gateway", "started (pid 42)") == "  gateway       started (pid 42)"
    banner = Banner(
        "http://127.0.0.1:8701/",
        "acme",
        "ws://127.0.0.1:8700/v1/agent",
        Path("/d"),
        False,
        "http://127.0.0.1:8702/",
    )
    assert banner_lines(banner) == [
        "telework is up.",
        "  dashboard: http://127.0.0.1:8701/  (live board of tenant acme: sign in)",
        "  console:   http://127.0.0.1:8702/  (web console: sign in)",
        "  gateway:   ws://127.0.0.1:8700/v1/agent",
        "  data:      /d",
        "  log:       /d/logs/telework.log  (--verbose shows it here too)",
        "Press Ctrl-C to stop.",
    ]
    empty = Banner(None, None, "ws://127.0.0.1:8700/v1/agent", Path("/d"), True)
    assert banner_lines(empty)[1:3] == [
        "  dashboard: none yet: there is no tenant. Create one with\n"
        "             telework admin tenant create ID --name NAME\n"
        "             then restart `telework up` (or try `telework up --demo`)",
        "  gateway:   ws://127.0.0.1:8700/v1/agent",
    ]
    assert "  demo:      demo-pc-01's local page (camera preview, punches) is printed once it runs" in (
        banner_lines(empty)
    )


def test_relay_files_every_line_and_shows_only_the_loud_ones(tmp_path: Path) -> None:
    """Through a real pipe: every line in the file with proc=NAME; the terminal gets the warning and
    the traceback (escaped), not the info line; the thread ends when the child's end closes."""
    read_end, write_end = os.pipe()
    log_file = RotatingLogFile(tmp_path / "telework.log")
    terminal = io.StringIO()
    thread = relay("worker-1", os.fdopen(read_end, "rb"), log_file, False, lambda: terminal, lambda: NOW)
    with os.fdopen(write_end, "wb") as child:
        child.write(f"{INFO}\n{WARNING}\nTraceback \x1b[2J(most recent call last):\n".encode())
    thread.join(10)
    assert not thread.is_alive()
    log_file.close()
    assert terminal.getvalue() == (
        f"worker-1: {WARNING}\nworker-1: Traceback \\x1b[2J(most recent call last):\n"
    )
    filed = (tmp_path / "telework.log").read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in filed] == ["proc=worker-1"] * 3
    assert filed[0] == INFO + " proc=worker-1"


def test_with_verbose_the_terminal_gets_every_line(tmp_path: Path) -> None:
    """--verbose: the info line reaches the terminal too, and the file still has every line."""
    read_end, write_end = os.pipe()
    log_file = RotatingLogFile(tmp_path / "telework.log")
    terminal = io.StringIO()
    thread = relay("gateway", os.fdopen(read_end, "rb"), log_file, True, lambda: terminal, lambda: NOW)
    with os.fdopen(write_end, "wb") as child:
        child.write(f"{INFO}\n{WARNING}\n".encode())
    thread.join(10)
    log_file.close()
    assert terminal.getvalue() == f"gateway: {INFO}\ngateway: {WARNING}\n"
    assert len((tmp_path / "telework.log").read_text().splitlines()) == 2
