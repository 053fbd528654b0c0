"""The process kit: what every long-running program does the same way.

- :func:`redis_url`: the Redis a program talks to, or one :class:`~core.errors.OperatorError`
  saying how to give it;
- :func:`stop_on_signals` / :func:`async_stop_on_signals`: SIGINT and SIGTERM ask for a clean
  stop (the one place a signal handler is installed);
- :func:`run_command`: runs a command body and turns an operator error into one line and exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from core.config import ConfigError
from core.errors import USAGE_ERROR, OperatorError
from core.logs import printable
from core.settings import REDIS_URL_FILE, ServerSettings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal was closed


def redis_url_file(data_dir: Path) -> Path:
    """Where a running ``telework up`` publishes the URL of its embedded Redis."""
    return data_dir / REDIS_URL_FILE


def redis_url(settings: ServerSettings, needed_by: str, *, published: bool = True) -> str:
    """TELEWORK_REDIS_URL, else (with ``published``) the URL a running ``telework up`` published.

    ``needed_by`` names the program in the error: "the gateway", "a worker", ...
    """
    if settings.redis_url:
        return settings.redis_url
    path = redis_url_file(settings.data_dir)
    if published:
        with contextlib.suppress(OSError):
            url = path.read_text().strip()
            if url:
                return url
    where = f" and no `telework up` is running with data folder {settings.data_dir}" if published else ""
    raise ConfigError(
        "TELEWORK_REDIS_URL",
        f"not set{where}; {needed_by} needs the Redis that carries the agents' events "
        "(e.g. redis://127.0.0.1:6379/0); `telework up` starts an embedded Redis and passes it on",
    )


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], object]) -> Iterator[None]:
    """Inside the block, SIGINT, SIGTERM and SIGHUP call ``stop``; the previous handlers come back after.

    For synchronous programs. ``stop`` runs on a thread of its own, never inside the handler: a
    handler runs in the main thread between two of its bytecodes, possibly while that thread holds
    the very lock ``stop`` takes (``threading.Event.set`` inside ``Event.wait``), and a second
    signal arriving then deadlocked the process for good. Off the main thread signals cannot be
    caught: ``stop`` is then never called and the caller stops the program another way.
    """
    previous: dict[signal.Signals, signal.Handlers | Callable[[int, FrameType | None], object] | int | None]
    previous = {}

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=stop, name="stop-signal", daemon=True).start()

    try:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread
                previous[sig] = signal.signal(sig, on_signal)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def async_stop_on_signals(stop: asyncio.Event) -> Iterator[asyncio.Event]:
    """Inside the block, SIGINT, SIGTERM and SIGHUP set ``stop`` on the running loop (woken at once)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        for sig in STOP_SIGNALS:
            # Not available off the main thread or on Windows; the caller then stops us another way.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_command(prog: str, body: Callable[[], int | None]) -> int:
    """Run ``body``; an :class:`OperatorError` becomes its message on stderr (control characters
    escaped) and exit code 2."""
    try:
        return body() or 0
    except KeyboardInterrupt:
        return 130
    except OperatorError as exc:
        # every control character escaped, whatever the message quotes; its own line breaks kept
        message = "\n".join(printable(line) for line in str(exc).split("\n"))
        print(f"{prog}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
