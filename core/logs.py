"""Structured one-line logs on stderr (logfmt), including the ``extra={...}`` fields.

:func:`setup_logging` can also send them to a :class:`RotatingLogFile` (``telework up``: the
full log in the data folder) while the terminal gets only ``console_level`` and above. A
web server's line per connection (uvicorn's and websockets' "[accepted]", "connection open",
"connection closed") counts as DEBUG (:class:`ConnectionLinesFilter`).

Every record becomes ``ts=... level=... logger=... msg="..." key=value ...``; values
with spaces, quotes, backslashes or ``=`` are quoted, and every character that could end
a line or steer a terminal (control and format characters: ``\\r``, ``\\n``, ESC, NUL,
U+2028, bidi overrides, lone surrogates...) is escaped, so one record is always exactly
one line and no input can forge another. :class:`LogThrottle` keeps a flood of identical
lines (failed handshakes) to one per reason per window.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters that may need escaping: ASCII controls, quote and backslash, and anything
# beyond ASCII (escaped only when not printable: C1 controls, U+2028, bidi controls...).
_SUSPECT = re.compile(r'[\x00-\x1f\x7f"\\]|[^\x00-\x7f]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]|[^\x00-\x7f]")  # what :func:`printable` may escape
_PLAIN = re.compile(r'[^\x00-\x20"=\\\x7f]+')  # a value left unquoted is one run of these


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _value(value: object) -> str:
    """One logfmt value: as it is when it is plain printable text, else quoted with every
    control character escaped (never a line break, never a terminal escape)."""
    text = str(value)
    if _PLAIN.fullmatch(text) and (text.isascii() or text.isprintable()):
        return text
    return '"' + _SUSPECT.sub(_escape, text) + '"'


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        parts = [
            f"ts={ts}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_value(record.getMessage())}",
        ]
        for key, val in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={_value(val)}")
        if record.exc_info:
            parts.append(f"exc={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class LogThrottle:
    """At most one line per key per ``window_s`` (clock injected); the lines held back are counted.

    ``admit(key)`` returns None when this line should be dropped, else the number of lines of
    ``key`` dropped since the last one admitted (to log with it: "... suppressed=N"). Keys are
    fixed names (reasons), at most ``max_keys`` of them; more share one key, ``other``.
    """

    def __init__(
        self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic, max_keys: int = 64
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        if key not in self._last and len(self._last) >= self.max_keys:
            key = "other"
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._dropped.pop(key, 0)


# What a library logs with a traceback about what a peer sent (no fault of ours): logger -> messages.
PEER_FAULTS: dict[str, frozenset[str]] = {
    "uvicorn.error": frozenset({"Invalid UTF-8 sequence received from client."}),  # closed 1007
}


class PeerFaultFilter(logging.Filter):
    """Turns a library's record about a peer's bad input into one INFO line without a traceback."""

    def __init__(self, messages: frozenset[str]) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.messages:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_peer_faults() -> None:
    """Install :class:`PeerFaultFilter` on the loggers of :data:`PEER_FAULTS` (once each)."""
    for name, messages in PEER_FAULTS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, PeerFaultFilter) for f in logger.filters):
            logger.addFilter(PeerFaultFilter(messages))


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the one at set-up)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


# A web server's line per connection: logger -> messages, logged at INFO, DEBUG here.
CONNECTION_LINES: dict[str, frozenset[str]] = {
    "uvicorn.error": frozenset(
        {
            '%s - "WebSocket %s" [accepted]',
            '%s - "WebSocket %s" 403',
            "connection open",
            "connection closed",
        }
    ),
}


class ConnectionLinesFilter(logging.Filter):
    """Turns a web server's line per connection into DEBUG (dropped unless DEBUG is on)."""

    def __init__(self, messages: frozenset[str]) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in self.messages or record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def printable(text: str, *, spaces: bool = False) -> str:
    """Pure: ``text`` with every control or format character escaped (ESC as ``\\x1b``, a line
    break as ``\\n``, U+2028...), so it prints as one line that cannot steer a terminal. ``spaces``:
    keep the space separators (a full-width or no-break space, for a table of names); a log line
    escapes them too, so that it is ``str.isprintable``."""
    return _CONTROL.sub(_keeping_spaces if spaces else _escape, text)


def _keeping_spaces(match: re.Match[str]) -> str:
    char = match.group()
    return char if unicodedata.category(char) == "Zs" else _escape(match)


class RotatingLogFile:
    """Lines appended to ``path`` (0600, its folder 0700); past ``max_bytes`` the file becomes
    ``path.1`` (``.1`` becomes ``.2`` ..., ``backups`` kept) and a new one starts. Thread-safe;
    one process writes it (``telework up``; its children's lines reach it through ``up``)."""

    def __init__(self, path: Path, max_bytes: int = 10 * 2**20, backups: int = 5) -> None:
        if max_bytes < 1 or backups < 1:
            raise ValueError(f"max_bytes and backups: expected >= 1, got {max_bytes} and {backups}")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = self._open()

    def _open(self) -> TextIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")

    def write_line(self, line: str) -> None:
        """Append one line (a trailing newline is added; one inside is escaped)."""
        text = line.rstrip("\n").replace("\n", "\\n") + "\n"
        with self._lock:
            if self._file.closed:
                return
            if self._file.tell() and self._file.tell() + len(text) > self.max_bytes:
                self._rotate()
            self._file.write(text)
            self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class LogFileHandler(logging.Handler):
    """Writes each record, as logfmt, to a :class:`RotatingLogFile`."""

    def __init__(self, log_file: RotatingLogFile) -> None:
        super().__init__()
        self.log_file = log_file
        self.setFormatter(LogfmtFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log_file.write_line(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def quiet_connection_lines() -> None:
    """Install :class:`ConnectionLinesFilter` on the loggers of :data:`CONNECTION_LINES` (once each)."""
    for name, messages in CONNECTION_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, ConnectionLinesFilter) for f in logger.filters):
            logger.addFilter(ConnectionLinesFilter(messages))


def setup_logging(
    level: str | int = "INFO",
    log_file: RotatingLogFile | None = None,
    console_level: str | int | None = None,
) -> None:
    """Send every log record at ``level``, as logfmt, to stderr (only ``console_level`` and above
    when given) and to ``log_file`` when given; replaces an earlier set-up's handlers."""
    handler = StderrHandler()
    handler.setFormatter(LogfmtFormatter())
    if console_level is not None:
        handler.setLevel(console_level if isinstance(console_level, int) else console_level.upper())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, StderrHandler | LogFileHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    if log_file is not None:
        root.addHandler(LogFileHandler(log_file))
    root.setLevel(level if isinstance(level, int) else level.upper())
    quiet_peer_faults()
    quiet_connection_lines()
