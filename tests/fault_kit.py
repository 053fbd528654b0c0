"""Helpers of the fault tests: our own redis-server to kill, real server processes, a raw agent session."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from websockets.asyncio.client import ClientConnection

from core.settings import sqlite_url
from realtime import keys
from realtime.embedded_redis import EmbeddedRedis, free_port
from realtime.protocol import (
    PROTOCOL_VERSION,
    Events,
    Hello,
    StateEvent,
    StatePayload,
    encode,
    new_event_id,
    parse_server_frame,
)
from storage.accounts import create_agent, create_tenant, create_user
from storage.db import make_engine, upgrade
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
RECV_TIMEOUT_S = 10.0


class KillableRedis:
    """A redis-server with its append-only file in ``folder`` on a fixed port: SIGKILLed and started
    again on the same port and file, as a crashed Redis comes back under a process manager."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.server: EmbeddedRedis | None = None

    @property
    def password(self) -> str:
        return EmbeddedRedis(self.folder, self.port).password  # the folder's, made at first use

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server = EmbeddedRedis(self.folder, self.port)
        self.server.start()

    def kill(self) -> None:
        """SIGKILL: no save, no goodbye to the clients."""
        assert self.server is not None and self.server.process is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(10)
        self.server.process = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class DeadLinkProxy:
    """A TCP relay to Redis across which a dead Redis goes unnoticed, as across a network: when the
    Redis side of a connection closes, the client side stays open and silent, and the client's next
    write on it is answered with a reset (a restarted host that forgot the connection). Connections
    made after that reach the Redis listening on ``upstream_port`` again."""

    def __init__(self, upstream_port: int, password: str = "") -> None:
        self.upstream_port = upstream_port
        self.password = password  # the upstream Redis's, carried in the URL
        self.port = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> DeadLinkProxy:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        dead = asyncio.Event()

        async def to_redis() -> None:
            try:
                while data := await reader.read(65536):
                    if dead.is_set():
                        _reset(writer)
                        return
                    up_writer.write(data)
                    await up_writer.drain()
            except OSError:
                _reset(writer)
                return
            writer.close()  # the client closed: so does the relay
            up_writer.close()

        async def to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            dead.set()  # Redis went away: the client is not told
            up_writer.close()

        await asyncio.gather(to_redis(), to_client())


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a host answers for a connection it does not know."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextmanager
def killable_redis(folder: Path) -> Iterator[KillableRedis]:
    redis = KillableRedis(folder)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def migrated_sqlite(folder: Path) -> str:
    """A migrated SQLite database in ``folder``; its URL."""
    url = sqlite_url(folder)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


def provision(database_url: str, agents: int = 1) -> tuple[str, list[str]]:
    """A fresh tenant with one user and ``agents`` agents (pc-1, pc-2, ...); returns (tenant, tokens)."""
    tenant = f"t{uuid.uuid4().hex[:12]}"
    engine = make_engine(database_url)
    try:
        create_tenant(engine, tenant, "Fault tenant")
        create_user(engine, tenant, "alice", "Alice")
        tokens = [create_agent(engine, tenant, f"pc-{i}", "alice") for i in range(1, agents + 1)]
    finally:
        engine.dispose()
    return tenant, tokens


def stored_events(database_url: str, tenant: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            sql = text("SELECT count(DISTINCT id) FROM event WHERE tenant_id = :t")
            return int(conn.execute(sql, {"t": tenant}).scalar_one())
    finally:
        engine.dispose()


def server_env(**values: str) -> dict[str, str]:
    """The environment of a server process: ours without TELEWORK_* settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEWORK_")}
    env.update({"TELEWORK_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}, **values)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m telework ARGS`` with its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "telework", *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process a test started, whatever state it is in."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def recv_frame(ws: ClientConnection) -> Any:
    return parse_server_frame(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))


async def next_frame_of(
    ws: ClientConnection, kind: type[T], predicate: Callable[[T], bool] = lambda _: True
) -> T:
    """The next frame of type ``kind`` matching ``predicate``; other frames (stored, heartbeat...) skipped."""
    while True:
        frame = await recv_frame(ws)
        if isinstance(frame, kind) and predicate(frame):
            return frame


async def say_hello(ws: ClientConnection, token: str) -> Any:
    """Send hello; the first frame back (a Welcome when the session is accepted)."""
    await ws.send(encode(Hello(token=token, agent_version="test", protocol=PROTOCOL_VERSION)))
    return await recv_frame(ws)


def state_events(first_seq: int, count: int) -> Events:
    states = ("present", "away")
    return Events(
        events=[
            StateEvent(
                id=new_event_id(),
                seq=seq,
                ts=datetime.now(UTC),
                payload=StatePayload(state=states[seq % 2]),
            )
            for seq in range(first_seq, first_seq + count)
        ]
    )


class DatabaseLock:
    """Blocks every writer of the event table until released (PostgreSQL table lock, SQLite write lock)."""

    def __init__(self, database_url: str, engine: Engine) -> None:
        self.sqlite: sqlite3.Connection | None = None
        self.released = False
        if engine.dialect.name == "sqlite":
            path = make_url(database_url).database
            self.sqlite = sqlite3.connect(str(path), isolation_level=None)
            self.sqlite.execute("BEGIN IMMEDIATE")
        else:
            self.conn = engine.connect()
            self.trans = self.conn.begin()
            self.conn.execute(text("LOCK TABLE event IN EXCLUSIVE MODE"))

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.sqlite is not None:
            self.sqlite.execute("ROLLBACK")
            self.sqlite.close()
        else:
            self.trans.rollback()
            self.conn.close()


@asynccontextmanager
async def worker_killed_mid_batch(
    client: aioredis.Redis,
    stream: str,
    consumer: str,
    entries: int,
    env: dict[str, str],
    log_path: Path,
    lock: DatabaseLock,
) -> AsyncIterator[None]:
    """A real ``python -m workers`` process that reads ``entries`` entries of ``stream`` as
    ``consumer`` while ``lock`` keeps it from committing, SIGKILLed holding them all; the block runs
    after the kill with the lock released. The process is killed and the lock released on any exit."""
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers", cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:

        async def holds_all() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"worker exited {proc.returncode}: {log_path.read_text()}")  # noqa: ASYNC240 (failing)
            try:
                info = await client.xpending(stream, keys.PERSIST_GROUP)
            except ResponseError:  # NOGROUP: the worker has not created the group yet
                return False
            return any(c["name"] == consumer and int(c["pending"]) == entries for c in info["consumers"])

        await wait_until(holds_all, timeout=30, what=f"{entries} entries pending for {consumer}")
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == -signal.SIGKILL
        lock.release()
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        lock.release()
