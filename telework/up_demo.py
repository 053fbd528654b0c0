"""The demo steps of ``telework up --demo``: its tenant and agents' tokens, and the camera agent's
first punch (tried in the background until the scene shows its user), with its local page said
once the agent runs."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

CAMERA_AGENT_DIR = "camera-agent"  # in the data folder: the demo camera agent's own data folder


@dataclass(frozen=True)
class DemoAgents:
    """The demo's agents: the simulated ones (their tokens file) and the one on the face pipeline."""

    tokens_file: Path | None = None
    camera_token: str | None = None


def demo_scene_available() -> bool:
    """The demo's camera scene needs the sample faces shipped in the insightface package."""
    import importlib.util

    return importlib.util.find_spec("insightface") is not None


def set_up_demo(engine: Engine, data_dir: Path, agents: int) -> DemoAgents:
    """The demo tenant and its agents' tokens; with the demo scene available, demo-pc-01 runs the
    face pipeline and the other agents are simulated from their own tokens file."""
    from telework.demo import (
        SIMULATED_TOKENS_FILE,
        ensure_demo,
        read_tokens,
        split_camera_agent,
        write_tokens,
    )

    tokens_file = ensure_demo(engine, data_dir, agents)
    if not demo_scene_available():
        return DemoAgents(tokens_file)
    camera_token, others = split_camera_agent(read_tokens(tokens_file))
    simulated = data_dir / SIMULATED_TOKENS_FILE
    write_tokens(simulated, others)
    return DemoAgents(simulated, camera_token)


def start_demo_punch(folder: Path, stop: threading.Event, say: Callable[[str], None]) -> None:
    """The demo camera agent's first punch, tried in the background until it works or `up` stops."""
    threading.Thread(target=demo_punch_in, args=(folder, stop, say), daemon=True, name="demo-punch").start()


def demo_punch_in(
    folder: Path, stop: threading.Event, say: Callable[[str], None], timeout_s: float = 120.0
) -> bool:
    """The demo's camera agent starts work as its user would: a face-verified punch through its
    control channel, retried until the scene shows the user (or the agent is already on duty).
    Its local page is said once the agent answers."""
    from agent.control import ControlError, request
    from agent.run import page_url
    from core.errors import OperatorError

    deadline = time.monotonic() + timeout_s
    reply: dict[str, object] = {"message": "stopped before the first try"}
    page_said = False
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            status, reply = request(folder, "POST", "/api/punch?lang=en", {"kind": "in"})
        except ControlError:
            status, reply = 0, {"message": "agent not running yet"}
        if status and not page_said:
            with contextlib.suppress(OperatorError):
                say(f"  demo-pc-01's local page (camera preview, punches): {page_url(folder)}")
                page_said = True
        if status == 200 or reply.get("reason") == "already_on_duty":
            log.info("demo camera agent on duty", extra={"reply": reply.get("message")})
            return True
        stop.wait(2.0)
    log.warning("demo camera agent could not punch in", extra={"last": reply.get("message")})
    return False
