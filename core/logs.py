"""Structured one-line logs on stderr (logfmt), including the ``extra={...}`` fields.

Every record becomes ``ts=... level=... logger=... msg="..." key=value ...``; values
with spaces, quotes, backslashes or ``=`` are quoted, and every character that could end
a line or steer a terminal (control and format characters: ``\\r``, ``\\n``, ESC, NUL,
U+2028, bidi overrides, lone surrogates...) is escaped, so one record is always exactly
one line and no input can forge another. :class:`LogThrottle` keeps a flood of identical
lines (failed handshakes) to one per reason per window.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
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


def setup_logging(level: str | int = "INFO") -> None:
    """Send every log record, as logfmt, to stderr at ``level``; replaces an earlier set-up's handler."""
    handler = StderrHandler()
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, StderrHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    quiet_peer_faults()
