"""``telework agent --simulate``: scripted teleworker days, compressed in time, over real sessions.

:func:`day_script` is pure: one working day as a list of payloads (duty on, present,
tasks, a break away, the occasional peeking incident, duty off). :func:`run_simulation`
runs one :class:`~agent.client.AgentSession` per token in one asyncio loop and emits each
agent's script at ``events_per_s`` events per second per agent, day after day, until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.client import AgentSession
from agent.ports import Payload
from agent.session_parts import SessionOptions
from core.errors import OperatorError
from realtime.protocol import DutyPayload, IncidentPayload, StatePayload, TaskPayload

log = logging.getLogger(__name__)

TASKS = ("email", "design review", "coding", "customer call", "documentation", "planning")


class TokensFileError(OperatorError, ValueError):
    """The tokens file cannot be read or has the wrong shape."""


def load_tokens(path: Path) -> dict[str, str]:
    """Read ``{"agent_id": "token", ...}`` or ``["token", ...]`` from a JSON file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TokensFileError(f"tokens file {path}: {exc}") from None
    if isinstance(data, list) and all(isinstance(t, str) for t in data):
        return {f"agent-{i + 1}": t for i, t in enumerate(data)}
    if isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return dict(data)
    raise TokensFileError(
        f"tokens file {path}: expected a JSON object agent_id -> token or a list of tokens, "
        f"got {type(data).__name__}"
    )


def _present() -> StatePayload:
    return StatePayload(state="present")


def day_script(rng: random.Random, blocks: int = 4, peek_chance: float = 0.25) -> list[Payload]:
    """One working day: duty on, ``blocks`` task blocks with breaks and incidents, duty off."""
    day: list[Payload] = [DutyPayload(on_duty=True, verified=True), _present()]
    for _ in range(blocks):
        day.append(TaskPayload(task=rng.choice(TASKS)))
        day.extend(_present() for _ in range(rng.randint(1, 3)))
        if rng.random() < peek_chance:
            day += [
                IncidentPayload(kind="peeking", phase="start"),
                StatePayload(state="peeking"),
                IncidentPayload(kind="peeking", phase="end"),
                _present(),
            ]
        day.append(TaskPayload(task=None))
        if rng.random() < 0.6:
            day += [StatePayload(state="away")] * rng.randint(1, 2) + [_present()]
    day += [StatePayload(state="away"), DutyPayload(on_duty=False, verified=True)]
    return day


async def _drive(session: AgentSession, events_per_s: float, rng: random.Random, stop: asyncio.Event) -> None:
    """Emit the agent's days at ``events_per_s`` (with +-20% jitter) until ``stop``."""
    period = 1.0 / events_per_s
    while not stop.is_set():
        for payload in day_script(rng):
            if stop.is_set() or session.fatal is not None:
                return
            session.emit(payload)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period * rng.uniform(0.8, 1.2)):
                    await stop.wait()


async def _all_done(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; being cancelled does not cancel them (unlike gather)."""
    if tasks:
        await asyncio.wait(tasks)


async def run_simulation(
    gateway_url: str,
    tokens: Mapping[str, str] | Sequence[str],
    events_per_s: float,
    stop: asyncio.Event,
    options: SessionOptions | None = None,
    seed: int | None = None,
) -> list[AgentSession]:
    """Run one simulated agent per token until ``stop`` is set; returns the sessions.

    Agents whose token is refused (close 1008/1002) stop alone; the others carry on.
    Ends early when every session was refused. On stop, each session gets a moment to
    have its last events acked, then closes.
    """
    if isinstance(tokens, Mapping):
        named = dict(tokens)
    else:
        named = {f"agent-{i + 1}": t for i, t in enumerate(tokens)}
    master = random.Random(seed)
    sessions = [AgentSession(gateway_url, token, options, name=name) for name, token in named.items()]
    runners = [asyncio.create_task(s.run()) for s in sessions]
    drivers = [
        asyncio.create_task(_drive(s, events_per_s, random.Random(master.random()), stop)) for s in sessions
    ]
    log.info("simulation started", extra={"agents": len(sessions), "events_per_s": events_per_s})
    stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    # every session refused for good also ends the simulation
    all_ended: asyncio.Future[object] = asyncio.ensure_future(_all_done(runners))
    try:
        await asyncio.wait([stopped, all_ended], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        stopped.cancel()
        all_ended.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*(s.wait_acked() for s in sessions if s.connected.is_set()))
        for s in sessions:
            s.stop()
        await asyncio.gather(*runners, return_exceptions=True)
        log.info(
            "simulation stopped",
            extra={
                "agents": len(sessions),
                "sent": sum(s.last_seq for s in sessions),
                "unacked": sum(len(s.outbox) for s in sessions),
            },
        )
    return sessions
