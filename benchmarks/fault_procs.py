"""The processes of the fault-matrix benchmark: children it can SIGKILL and restart, a private
redis-server (AOF) and a private PostgreSQL cluster, and a round-robin TCP balancer for the gateways.

Every child writes its output to a log file (appended across restarts) and runs in a session of
its own, so a Ctrl-C reaches only the benchmark, which then stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis

log = logging.getLogger("benchmarks.faults")
ROOT = Path(__file__).resolve().parent.parent


class ChildProcess:
    """One child process the benchmark starts, kills with SIGKILL and starts again."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path, **popen: Any):
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.popen_kwargs = popen
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.busy = False  # being killed or restarted on purpose: the supervisor leaves it alone

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start {self.starts + 1} of {self.name} at {time.strftime('%X')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                start_new_session=True,
                **self.popen_kwargs,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL the process and every process it started; return once they are all gone."""
        if self.proc is None:
            return
        try:
            family = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=15)
        self.proc.wait(15)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL what outlives ``grace_s``."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()


def wait_for(check: Any, what: str, timeout_s: float) -> None:
    """Call ``check()`` until it returns true (exceptions count as false), or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    error = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # anything counts as "not yet"
            error = f": {type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout_s:g} s{error}")


class PrivateRedis(ChildProcess):
    """redis-server on its own port and folder, AOF with ``appendfsync everysec``."""

    def __init__(self, folder: Path, port: int, log_path: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "no"]
        super().__init__("redis", argv, dict(os.environ), log_path)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        def ping() -> bool:
            if not self.alive():
                raise RuntimeError(f"redis-server exited with {self.exit_code()}")
            client = redis.Redis(port=self.port, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()

        wait_for(ping, "redis-server", timeout_s)


def postgres_bin(name: str) -> str:
    """``name`` (initdb, postgres) from the newest /usr/lib/postgresql/*/bin, else from the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"expected PostgreSQL's {name} under /usr/lib/postgresql/*/bin or on the PATH"
        )
    return path


class PrivatePostgres(ChildProcess):
    """A PostgreSQL cluster of its own (trust auth, loopback, a free port), never the machine's.

    As root the server refuses to run, so it runs as the ``postgres`` user in a folder that user owns.
    """

    def __init__(self, folder: Path, port: int, log_path: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        argv = [postgres_bin("postgres"), "-D", str(self.data), "-p", str(port)]
        for option in ("listen_addresses=127.0.0.1", "unix_socket_directories=", "shared_buffers=64MB"):
            argv += ["-c", option]
        super().__init__("postgres", argv, {**os.environ, "LC_ALL": "C"}, log_path, **user)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/telework"
        self.conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=telework connect_timeout=2"

    def init(self) -> None:
        """initdb the cluster, start it and create the database ``telework``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if "user" in self.popen_kwargs:
            shutil.chown(self.folder, "postgres", "postgres")
        with self.log_path.open("ab") as out:
            subprocess.run(
                [postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.folder,
                **self.popen_kwargs,
            )
        self.start()
        self.wait_ready(admin=True)
        with psycopg.connect(
            self.conninfo.replace("dbname=telework", "dbname=postgres"), autocommit=True
        ) as c:
            c.execute("CREATE DATABASE telework")

    def wait_ready(self, timeout_s: float = 60.0, admin: bool = False) -> None:
        info = self.conninfo.replace("dbname=telework", "dbname=postgres") if admin else self.conninfo

        def connect() -> bool:
            if not self.alive():
                raise RuntimeError(f"postgres exited with {self.exit_code()}")
            with psycopg.connect(info) as conn:
                conn.execute("SELECT 1")
            return True

        wait_for(connect, "PostgreSQL", timeout_s)


class RoundRobinProxy:
    """A TCP balancer in front of the gateways: each connection to the next gateway that accepts it.

    Agents reach every gateway through it, as behind a load balancer: when a gateway dies its
    connections drop and the agents' reconnects land on the others.
    """

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self._next = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            for i in range(len(self.ports)):
                port = self.ports[(self._next + i) % len(self.ports)]
                try:
                    b_reader, b_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
                except (OSError, TimeoutError):
                    continue
                self._next = (self._next + i + 1) % len(self.ports)
                pumps = [
                    asyncio.create_task(_pump(reader, b_writer)),
                    asyncio.create_task(_pump(b_reader, writer)),
                ]
                try:
                    await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for pump in pumps:
                        pump.cancel()
                    b_writer.close()
                return
        except asyncio.CancelledError:
            pass  # the balancer stops: end quietly (asyncio reports a cancelled connection callback)
        finally:
            writer.close()
            self._links.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file."""
    if not path.exists():
        return f"({path.name}: no log)"
    text = path.read_bytes()[-20000:].decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])
