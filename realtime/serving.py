"""How the gateway process listens and stops: its port taken first, a stop signal obeyed in every phase.

Run as uvicorn runs itself, a gateway whose port was taken never stopped: uvicorn started the
application (its lifespan starts the background tasks), then failed to bind, then waited for the
lifespan to shut down, which hung on a background task (the settings listener, whose cancel
redis-py can lose); and uvicorn only notes a stop signal, looking at it once start-up is over.
So:

- :func:`listen_socket` binds and listens on the gateway's address before anything starts; a taken
  port is one :class:`ListenFailed` line (exit code 2) naming the address;
- :class:`GatewayServer` is uvicorn's server whose first stop signal during start-up also arms a
  timer: a start-up still running :data:`STARTUP_STOP_S` later (stuck on an unreachable database,
  say) ends the process. Nothing is open to agents before start-up ends, so nothing is lost;
- :func:`tls_factory` serves HTTPS/WSS with ``TELEWORK_TLS_CERT`` and ``TELEWORK_TLS_KEY``,
  checked before anything listens (the gateway and the web console alike).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

from core.errors import OperatorError
from core.settings import ServerSettings
from core.tls import server_context

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default: connections queued while the gateway finishes starting
STARTUP_STOP_S = 3.0  # a stop signal during start-up ends the process at the latest this long after
STOPPED_DURING_STARTUP = 128 + 15  # exit code of a start-up ended that way (as if by SIGTERM)


class ListenFailed(OperatorError):
    """The gateway cannot listen on its address (taken, not local, not resolvable)."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; ListenFailed naming the address if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise ListenFailed(
            f"cannot listen on {address}: {exc.strerror or exc} "
            "(set another address with --host/--port or TELEWORK_GATEWAY_HOST/TELEWORK_GATEWAY_PORT)"
        ) from None
    return sock


SslFactory = Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]


def tls_factory(settings: ServerSettings) -> SslFactory | None:
    """uvicorn's ``ssl_context_factory`` serving ``TELEWORK_TLS_CERT``/``TELEWORK_TLS_KEY`` (None: plain).

    The pair is read and checked here, at start-up: a bad path or key is one ConfigError line
    naming the setting, before anything listens (shared by the gateway and the web console)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = server_context(settings.tls_cert, settings.tls_key)
    return lambda _config, _default: context


def scheme(settings: ServerSettings, secure: str = "https", plain: str = "http") -> str:
    """Pure: ``https`` (or ``wss``) when the settings serve TLS, else ``http`` (or ``ws``)."""
    return secure if settings.tls else plain


class GatewayServer(uvicorn.Server):
    """uvicorn's server; a stop signal during start-up ends the process within :data:`STARTUP_STOP_S`."""

    def __init__(self, config: uvicorn.Config, startup_stop_s: float = STARTUP_STOP_S) -> None:
        super().__init__(config)
        self.startup_stop_s = startup_stop_s
        self._startup_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's own handling (stop once started), plus the start-up deadline."""
        super().handle_exit(sig, frame)
        if not self.started and self._startup_timer is None:
            timer = threading.Timer(self.startup_stop_s, self._end_startup, args=(sig,))
            timer.daemon = True
            timer.name = "startup-stop"
            self._startup_timer = timer
            timer.start()

    def _end_startup(self, sig: int) -> None:
        """In the timer thread: a start-up that did not finish after the stop signal ends here."""
        if self.started:
            return  # start-up finished: uvicorn's own stop is under way
        log.error(
            "stop signal during start-up; start-up did not finish, ending the gateway",
            extra={"signal": signal_name(sig), "after_s": self.startup_stop_s},
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(STOPPED_DURING_STARTUP)


def signal_name(sig: int) -> str:
    """Pure: SIGTERM for 15; the number for a signal without a name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
