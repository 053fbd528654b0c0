"""The agents of the fault-matrix benchmark, each mode a child process of ``benchmarks/faults.py``.

* ``agent``: N real :class:`agent.client.AgentSession` s, each with its own
  :class:`agent.spool.Spool` (so an event is fsynced when ``emit`` returns, and a restarted
  process resends what its spools hold). Each agent emits ``duty on`` first, then state events
  (present / away alternating) with a task event every ``tasks_every``-th, at a steady rate, until
  the quiesce file appears. The highest cumulative ack of every agent is written to a JSON file
  each second and at exit.
* ``hostile``: one agent speaking raw WebSocket frames that sends, every few seconds, one
  malformed or out-of-range frame (kinds in :data:`POISON_KINDS`), each event with a fresh id, and
  appends to a JSON-lines file what it sent and the reply it got (``ack``, ``error``, a close...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from agent.spool import Spool
from core.logs import setup_logging
from realtime.protocol import (
    MAX_FRAME_BYTES,
    DutyPayload,
    StatePayload,
    TaskPayload,
    new_event_id,
)

log = logging.getLogger("benchmarks.faults")


def payload_for(seq: int, tasks_every: int) -> StatePayload | TaskPayload | DutyPayload:
    """What an agent emits as its ``seq``-th event: duty on first, then states and tasks."""
    if seq == 1:
        return DutyPayload(on_duty=True)
    if tasks_every and seq % tasks_every == 0:
        return TaskPayload(task="report" if (seq // tasks_every) % 2 else None)
    return StatePayload(state="present" if seq % 2 else "away")


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_acks(path: Path) -> dict[str, int]:
    """The acks report of an agent process (agent -> highest cumulative ack); empty before the first."""
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _watch(path: Path, flag: asyncio.Event) -> None:
    while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110 - another process makes it
        await asyncio.sleep(0.5)
    flag.set()


async def run_agents(
    specs: list[dict[str, str]],
    spools: Path,
    acks_path: Path,
    quiesce: Path,
    rate: float,
    tasks_every: int,
    seed: int,
) -> None:
    """The ``agent`` mode, until SIGTERM: one session per ``{"agent", "token", "url"}`` of ``specs``."""
    acks = read_acks(acks_path)
    rng = random.Random(f"{seed}-{os.getpid()}")
    stop = _stop_event()
    quiet = asyncio.Event()

    def on_ack(agent: str) -> Callable[[int], None]:
        return lambda seq: acks.__setitem__(agent, max(acks.get(agent, 0), seq))

    sessions = [
        AgentSession(
            spec["url"],
            spec["token"],
            SessionOptions(usage_report_s=0),
            agent_version="faults-bench",
            on_ack=on_ack(spec["agent"]),
            name=spec["agent"],
            spool=Spool.in_dir(spools / spec["agent"]),
        )
        for spec in specs
    ]

    async def emitter(session: AgentSession) -> None:
        if session.last_seq == 0:
            session.emit(payload_for(1, tasks_every))
        period = 1.0 / rate
        next_at = time.monotonic() + rng.uniform(0, period)
        while not quiet.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(quiet.wait(), max(0.0, next_at - time.monotonic()))
            if quiet.is_set():
                return
            session.emit(payload_for(session.last_seq + 1, tasks_every))
            next_at += period

    async def write_acks() -> None:
        while True:
            _write_json(acks_path, acks)
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(s.run()) for s in sessions]
    tasks += [asyncio.create_task(emitter(s)) for s in sessions]
    tasks += [asyncio.create_task(write_acks()), asyncio.create_task(_watch(quiesce, quiet))]
    await stop.wait()
    for session in sessions:
        session.stop()
    for task in tasks[len(sessions) :]:
        task.cancel()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    _write_json(acks_path, acks)
    for session in sessions:
        if session.spool is not None:
            session.spool.close()


# ------------------------------------------------------------------------ hostile


def _event(kind: str, seq: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": str(new_event_id()),
        "seq": seq,
        "ts": datetime.now(UTC).isoformat(),
        "type": kind,
        "payload": {"state": "present"},
    }
    base.update(fields)
    return base


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"n": node}
    return node


def _frame(*events: dict[str, Any]) -> str:
    return json.dumps({"type": "events", "events": list(events)})


Poison = tuple[str | bytes, str | None]  # the frame, the id of the event it carries


def _evented(event: dict[str, Any]) -> Poison:
    return _frame(event), str(event["id"])


POISON_KINDS: dict[str, Callable[[int], Poison]] = {
    "seq_2_64": lambda seq: _evented(_event("state", 2**64)),
    "seq_zero": lambda seq: _evented(_event("state", 0)),
    "ts_year_9999": lambda seq: _evented(_event("state", seq, ts="9999-12-31T23:59:59+00:00")),
    "ts_year_1970": lambda seq: _evented(_event("state", seq, ts="1970-01-01T00:00:00+00:00")),
    "ts_overflows_utc": lambda seq: _evented(_event("state", seq, ts="0001-01-01T00:00:00+01:00")),
    "events_not_a_list": lambda seq: ('{"type": "events", "events": 5}', None),
    "trace_300_deep": lambda seq: _evented(
        _event("state", seq, payload={"state": "present", "trace": _nested(300)})
    ),
    "nan_in_trace": lambda seq: _evented(
        _event("state", seq, payload={"state": "present", "trace": {"d": float("nan")}})
    ),
    "nul_in_task": lambda seq: _evented(_event("task", seq, payload={"task": "a\u0000b"})),
    "cr_in_type": lambda seq: _evented(_event("sta\rte", seq)),
    "id_not_v7": lambda seq: _evented(_event("state", seq, id=str(uuid.uuid4()))),
    "text_over_limit": lambda seq: _evented(
        _event("state", seq, payload={"state": "present", "trace": {"pad": "x" * MAX_FRAME_BYTES}})
    ),
    "binary_over_limit": lambda seq: (b"TWE1" + os.urandom(MAX_FRAME_BYTES + 1024), None),
}


async def _reply(ws: ClientConnection, timeout_s: float) -> str:
    """The outcome of the frame just sent: the first ack / error / evidence_rejected, or a close."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = json.loads(await ws.recv())
                kind = frame.get("type")
                if kind == "ack":
                    return "acked"
                if kind in ("error", "evidence_rejected"):
                    return f"{kind}:{frame.get('code')}"
    except TimeoutError:
        return "no_reply"
    except ConnectionClosed as exc:
        return f"close:{exc.rcvd.code if exc.rcvd else 'none'}"


async def run_hostile(url: str, token: str, out_path: Path, quiesce: Path, every_s: float, seed: int) -> None:
    """The ``hostile`` mode, until SIGTERM: one poison frame every ``every_s`` until the quiesce file."""
    rng = random.Random(seed)
    kinds = list(POISON_KINDS)
    rng.shuffle(kinds)
    stop = _stop_event()
    quiet = asyncio.Event()
    watcher = asyncio.create_task(_watch(quiesce, quiet))
    sent = seq = 0
    with out_path.open("a") as out:
        while not stop.is_set() and not quiet.is_set():
            try:
                async with connect(url, max_size=2**22, ping_interval=None, open_timeout=5) as ws:
                    hello = {"type": "hello", "token": token, "agent_version": "hostile", "protocol": 1}
                    await ws.send(json.dumps(hello))
                    async with asyncio.timeout(10):
                        while json.loads(await ws.recv()).get("type") != "welcome":
                            pass
                    while not stop.is_set() and not quiet.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), every_s)
                        if stop.is_set() or quiet.is_set():
                            break
                        kind = kinds[sent % len(kinds)]
                        seq += 1
                        frame, event_id = POISON_KINDS[kind](seq)
                        await ws.send(frame)  # a session already closed: not sent, reconnect
                        sent += 1
                        outcome = await _reply(ws, 5.0)
                        out.write(json.dumps({"kind": kind, "event_id": event_id, "outcome": outcome}) + "\n")
                        out.flush()
                        if outcome.startswith("close:"):
                            break
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError) as exc:
                log.warning("hostile agent: connection failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    watcher.cancel()
    await stop.wait()  # quiet: stay up until stopped, like the agents (an exit would be a crash)


# ---------------------------------------------------------------------- commands


def agent_main(argv: list[str]) -> None:
    """``faults.py agent --specs F --spools D --acks F --quiesce F --rate R``."""
    p = argparse.ArgumentParser(prog="faults.py agent")
    for name in ("--specs", "--spools", "--acks", "--quiesce"):
        p.add_argument(name, type=Path, required=True)
    p.add_argument("--rate", type=float, required=True, help="events/s per agent")
    p.add_argument("--tasks-every", type=int, default=5, help="every N-th event a task event (0: none)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    setup_logging("WARNING")
    specs = json.loads(a.specs.read_text())
    asyncio.run(run_agents(specs, a.spools, a.acks, a.quiesce, a.rate, a.tasks_every, a.seed))


def hostile_main(argv: list[str]) -> None:
    """``faults.py hostile --url U --token-file F --out F --quiesce F [--every S]``."""
    p = argparse.ArgumentParser(prog="faults.py hostile")
    p.add_argument("--url", required=True)
    for name in ("--token-file", "--out", "--quiesce"):
        p.add_argument(name, type=Path, required=True)
    p.add_argument("--every", type=float, default=3.0, help="seconds between poison frames")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    setup_logging("WARNING")
    asyncio.run(run_hostile(a.url, a.token_file.read_text().strip(), a.out, a.quiesce, a.every, a.seed))
