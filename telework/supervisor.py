"""The children of ``telework up``: how they are started, watched and stopped.

Pure parts (tested without I/O): :func:`stop_waves` orders a stop; :func:`on_child_exit`
decides what an exit means. :class:`Supervisor` does the I/O: one process per
:class:`ChildSpec`, polled for exits, stopped wave by wave (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

AGENT_CHILDREN = ("agents", "camera-agent")  # started once the servers are ready, stopped first


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the parent's environment


def stop_waves(names: list[str]) -> list[list[str]]:
    """Pure: the order of a stop. Agents first (their last events get acked), then gateway and
    dashboard (nothing new enters the streams), workers last (they persist what is left)."""
    rank = {name: 0 for name in AGENT_CHILDREN} | {"gateway": 1, "dashboard": 1}
    waves: dict[int, list[str]] = {}
    for name in names:
        waves.setdefault(rank.get(name, 2), []).append(name)
    return [waves[k] for k in sorted(waves)]


@dataclass(frozen=True)
class ExitDecision:
    shutdown: bool  # bring `up` down
    exit_code: int | None  # the exit code of `up` this exit implies (None: no change)
    level: int  # how loudly to log it
    message: str


def on_child_exit(name: str, returncode: int, stopping: bool) -> ExitDecision:
    """Pure: what a child's exit means. During a stop it is expected; otherwise fatal."""
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    if stopping:
        return ExitDecision(False, None, logging.INFO, f"{name} stopped ({how})")
    return ExitDecision(True, 1, logging.ERROR, f"{name} died unexpectedly ({how}); stopping everything")


class Supervisor:
    """Starts children, watches them, and stops them all (SIGTERM, then SIGKILL)."""

    def __init__(self, specs: list[ChildSpec], environ: Mapping[str, str], grace_s: float = 10.0) -> None:
        self.specs = specs
        self.environ = dict(environ)
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self, spec: ChildSpec) -> None:
        proc = subprocess.Popen(
            spec.argv,
            env={**self.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches `up` only; `up` stops the children in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.procs[spec.name] = proc
        log.info("child started", extra={"child": spec.name, "pid": proc.pid})

    def poll(self) -> ExitDecision | None:
        """The first unexpected exit since the last poll, if any (exited children are forgotten)."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[name]
            decision = on_child_exit(name, code, self.stopping)
            log.log(decision.level, decision.message, extra={"child": name, "pid": proc.pid, "code": code})
            if decision.shutdown:
                return decision
        return None

    def stop_all(self) -> None:
        """SIGTERM the children wave by wave (see :func:`stop_waves`); SIGKILL what outlives the grace."""
        self.stopping = True
        for wave in stop_waves([s.name for s in self.specs if s.name in self.procs]):
            self._stop_wave({name: self.procs[name] for name in wave})
        self.poll()

    def _stop_wave(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        for name, proc in procs.items():
            if proc.poll() is None:
                log.info("stopping child", extra={"child": name, "pid": proc.pid})
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for name, proc in procs.items():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing it", extra={"child": name, "pid": proc.pid})
                proc.kill()
                proc.wait()


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when `up` dies, even by SIGKILL, so no child is orphaned."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
