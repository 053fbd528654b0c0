"""What `telework up` shows at its terminal, and where the rest of its log goes.

The terminal gets a short banner (the addresses, the data folder, the log file, how to stop), one
progress line per process as it starts, and then only warnings and errors. Every line of `up` and
of its children goes to the rotating log file ``DATA_DIR/logs/telework.log`` (0600): a child's
output reaches `up` through a pipe, and :func:`relay` files each line under the child's name
(``proc=worker-1``) and shows it on the terminal when :func:`on_terminal` says so (with
``--verbose``, every line).

Pure parts (tested without I/O): :func:`line_level`, :func:`on_terminal`, :func:`file_line`,
:func:`terminal_line`, :func:`progress_line`, :func:`banner_lines`.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TextIO

from core.logs import RotatingLogFile, printable

LOG_FOLDER = "logs"  # in the data folder
LOG_FILE = "telework.log"  # in LOG_FOLDER; rotated to .1 ... .5 past 10 MiB
TERMINAL_LEVELS = frozenset({"warning", "error", "critical"})  # what reaches the terminal without --verbose
MAX_LINE_CHARS = 64 * 1024  # a longer output line is cut (a runaway print cannot fill memory)

_LOGFMT_LEVEL = re.compile(r"ts=\S+ level=([a-z]+) ")
_STDLIB_LEVEL = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:")  # logging's default format


def log_path(data_dir: Path) -> Path:
    return data_dir / LOG_FOLDER / LOG_FILE


def line_level(line: str) -> str | None:
    """Pure: the level of one output line: a logfmt record's ``level=``, the level of a line in
    logging's default format (``WARNING:name:msg``, from a library's own handler), else None (a
    print, a traceback: output that is no log record)."""
    found = _LOGFMT_LEVEL.match(line)
    if found is not None:
        return found.group(1)
    found = _STDLIB_LEVEL.match(line)
    return found.group(1).lower() if found is not None else None


def on_terminal(level: str | None, verbose: bool) -> bool:
    """Pure: does a line of this level reach the terminal? Warnings, errors and what is no log
    record (a traceback must never go unseen) do; with ``verbose`` everything does."""
    return verbose or level is None or level in TERMINAL_LEVELS


def _quoted(text: str) -> str:
    return '"' + printable(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def file_line(proc: str, line: str, level: str | None, now: datetime) -> str:
    """Pure: the log file's line for one output line of ``proc``: a logfmt record with
    ``proc=NAME`` added; anything else wrapped into one (``logger=output``, the text quoted)."""
    if line.startswith("ts=") and level is not None:
        return f"{printable(line)} proc={proc}"
    ts = now.astimezone(UTC).isoformat(timespec="milliseconds")
    return f"ts={ts} level={level or 'info'} logger=output msg={_quoted(line)} proc={proc}"


def terminal_line(proc: str, line: str) -> str:
    """Pure: one output line of ``proc`` as the terminal shows it, control characters escaped."""
    return f"{proc}: {printable(line)}"


def progress_line(what: str, detail: str) -> str:
    """Pure: "  gateway       started (pid 4242)"."""
    return f"  {what:<13} {detail}"


@dataclass(frozen=True)
class Banner:
    """What the banner names."""

    dashboard_url: str | None  # None: no live page (no tenant yet)
    tenant: str | None
    gateway_url: str
    data_dir: Path
    camera_agent: bool  # the demo's agent on the face pipeline runs
    console_url: str | None = None  # the web console (sign-in), when it runs
    sign_ins: Sequence[str] = ()  # the demo's ready sign-ins, one line each


def banner_lines(b: Banner) -> list[str]:
    """Pure: the banner `up` prints once the servers answer."""
    if b.dashboard_url is not None:
        page = f"  dashboard: {b.dashboard_url}  (live board of tenant {b.tenant}: sign in)"
    else:
        page = (
            "  dashboard: none yet: there is no tenant. Create one with\n"
            "             telework admin tenant create ID --name NAME\n"
            "             then restart `telework up` (or try `telework up --demo`)"
        )
    lines = [
        "telework is up.",
        page,
        *([f"  console:   {b.console_url}  (web console: sign in)"] if b.console_url else []),
        *b.sign_ins,
        f"  gateway:   {b.gateway_url}",
        f"  data:      {b.data_dir}",
        f"  log:       {log_path(b.data_dir)}  (--verbose shows it here too)",
    ]
    if b.camera_agent:
        lines.append("  demo:      demo-pc-01's local page (camera preview, punches) is printed once it runs")
    lines.append("Press Ctrl-C to stop.")
    return lines


# ------------------------------------------------------------------------------ I/O


def say(line: str) -> None:
    """A line for the person at the terminal (stdout): the banner, progress, a child's restart."""
    print(line, flush=True)


def relay(
    proc: str,
    stream: IO[bytes],
    log_file: RotatingLogFile,
    verbose: bool,
    terminal: Callable[[], TextIO] = lambda: sys.stderr,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> threading.Thread:
    """Read ``stream`` (a child's stdout and stderr) line by line until it ends, in a daemon thread:
    each line to ``log_file``, and to ``terminal`` when :func:`on_terminal` says so."""

    def pump() -> None:
        with stream:
            while raw := stream.readline(MAX_LINE_CHARS):
                line = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                level = line_level(line)
                log_file.write_line(file_line(proc, line, level, clock()))
                if on_terminal(level, verbose):
                    out = terminal()
                    out.write(terminal_line(proc, line) + "\n")
                    out.flush()

    thread = threading.Thread(target=pump, name=f"relay-{proc}", daemon=True)
    thread.start()
    return thread
