"""The children of ``telework up``: how they are started, watched, restarted and stopped.

Pure parts (tested without I/O): :func:`stop_waves` orders a stop; :func:`on_child_exit`
decides what an exit means (during a stop: expected; exit code 2 before the child was ever
ready: a configuration error that stops everything; otherwise a restart after
:func:`restart_delay`). :class:`Supervisor` does the I/O: one process per :class:`ChildSpec`,
polled for exits, restarted when due, stopped wave by wave (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO

from core.errors import USAGE_ERROR

log = logging.getLogger(__name__)

AGENT_CHILDREN = ("agents", "camera-agent")  # started once the servers are ready, stopped first
RESTART_FIRST_S = 1.0  # a child that died is restarted after this long; doubles per restart in a row
RESTART_CAP_S = 30.0  # longest wait before a restart
STABLE_AFTER_S = 60.0  # a child that ran this long counts as ready, and its next restart waits 1 s again


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the parent's environment


def stop_waves(names: list[str]) -> list[list[str]]:
    """Pure: the order of a stop. Agents first (their last events get acked), then gateway,
    dashboard and web console (nothing new enters the streams), workers last (they persist what
    is left)."""
    rank = {name: 0 for name in AGENT_CHILDREN} | {"gateway": 1, "dashboard": 1, "web": 1}
    waves: dict[int, list[str]] = {}
    for name in names:
        waves.setdefault(rank.get(name, 2), []).append(name)
    return [waves[k] for k in sorted(waves)]


@dataclass(frozen=True)
class ChildHistory:
    """What the supervisor remembers of one child across its restarts."""

    restarts: int = 0  # restarts so far (counted for the metrics)
    streak: int = 0  # restarts since the child last ran STABLE_AFTER_S
    ever_ready: bool = False  # it was ready once (the servers answered, or it ran STABLE_AFTER_S)


@dataclass(frozen=True)
class ExitDecision:
    shutdown: bool  # bring `up` down
    exit_code: int | None  # the exit code of `up` this exit implies (None: no change)
    level: int  # how loudly to log it
    message: str
    restart_in_s: float | None = None  # restart the child after this long (None: do not)
    history: ChildHistory | None = None  # the child's history after this exit (with a restart)


def restart_delay(streak: int) -> float:
    """Pure: the wait before the ``streak``-th restart in a row (from 1): 1 s doubling to 30 s."""
    if streak < 1:
        raise ValueError(f"streak: expected >= 1, got {streak}")
    return float(min(RESTART_CAP_S, RESTART_FIRST_S * 2 ** min(streak - 1, 16)))


def describe_exit(returncode: int) -> str:
    """Pure: "exit code 3", "killed by signal 9"."""
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


def on_child_exit(
    name: str, returncode: int, stopping: bool, history: ChildHistory | None = None, ran_s: float = 0.0
) -> ExitDecision:
    """Pure: what a child's exit means, given its ``history`` and how long it ran (``ran_s``).

    During a stop it is expected. Exit code 2 (an operator error, already printed by the child)
    of a server before it was ever ready is a configuration error: everything stops with exit code
    2. An agent child's exit 2 (the gateway refused its token) is restarted like any other exit.
    Any other exit is a restart after :func:`restart_delay` of the restarts in a row; a child that
    ran :data:`STABLE_AFTER_S` starts that count over.
    """
    how = describe_exit(returncode)
    if stopping:
        return ExitDecision(False, None, logging.INFO, f"{name} stopped ({how})")
    history = history or ChildHistory()
    stable = ran_s >= STABLE_AFTER_S
    # an agent refused (its token revoked, its user erased) is the agent's matter, never the servers'
    if returncode == USAGE_ERROR and name not in AGENT_CHILDREN and not (history.ever_ready or stable):
        return ExitDecision(
            True,
            USAGE_ERROR,
            logging.ERROR,
            f"{name} exited with code {USAGE_ERROR} before it was ready: a configuration error "
            "(its message is above); stopping everything",
        )
    streak = 1 if stable else history.streak + 1
    after = ChildHistory(history.restarts + 1, streak, history.ever_ready or stable)
    delay = restart_delay(streak)
    message = f"{name} died ({how}); restarting in {delay:g} s (restart {after.restarts})"
    return ExitDecision(False, None, logging.WARNING, message, delay, after)


class Supervisor:
    """Starts children, watches them, restarts those that die, and stops them all (SIGTERM, then SIGKILL).

    ``say`` gets each restart's one line for the terminal (it is logged too). With ``output``, a
    child's stdout and stderr go to one pipe, handed to ``output(name, pipe)`` as it starts (`up`
    relays it to its log file and terminal); without, the child writes to `up`'s own.
    """

    def __init__(
        self,
        specs: list[ChildSpec],
        environ: Mapping[str, str],
        grace_s: float = 10.0,
        say: Callable[[str], object] | None = None,
        output: Callable[[str, IO[bytes]], object] | None = None,
    ) -> None:
        self.specs = specs
        self.output = output
        self.environ = dict(environ)
        self.grace_s = grace_s
        self.say = say
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.history: dict[str, ChildHistory] = {}
        self.due: dict[str, float] = {}  # child -> when its restart is due (monotonic)
        self.stopping = False

    def start(self, spec: ChildSpec) -> None:
        piped = self.output is not None
        proc = subprocess.Popen(
            spec.argv,
            env={**self.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else None,
            stderr=subprocess.STDOUT if piped else None,
            start_new_session=True,  # Ctrl-C reaches `up` only; `up` stops the children in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        if self.output is not None and proc.stdout is not None:
            self.output(spec.name, proc.stdout)
        self.procs[spec.name] = proc
        self.started_at[spec.name] = time.monotonic()
        log.info("child started", extra={"child": spec.name, "pid": proc.pid})

    def mark_ready(self) -> None:
        """The running children are ready (the servers answer): a later exit 2 is no configuration error."""
        for name in self.procs:
            self.history[name] = replace(self.history.get(name, ChildHistory()), ever_ready=True)

    def restart_counts(self) -> dict[str, int]:
        """Restarts so far, per child that was restarted."""
        return {name: h.restarts for name, h in self.history.items() if h.restarts}

    def poll(self) -> ExitDecision | None:
        """Handle the exits since the last poll and start the restarts that are due; returns the
        first exit that brings `up` down, if any (exited children are forgotten)."""
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[name]
            ran_s = now - self.started_at.pop(name, now)
            decision = on_child_exit(name, code, self.stopping, self.history.get(name), ran_s)
            extra = {"child": name, "pid": proc.pid, "code": code, "ran_s": round(ran_s, 1)}
            log.log(decision.level, decision.message, extra=extra)
            if decision.shutdown:
                return decision
            if decision.restart_in_s is not None and decision.history is not None:
                self.history[name] = decision.history
                self.due[name] = now + decision.restart_in_s
                if self.say is not None:
                    self.say(decision.message)
        if not self.stopping:
            self._start_due(now)
        return None

    def _start_due(self, now: float) -> None:
        specs = {s.name: s for s in self.specs}
        for name, when in list(self.due.items()):
            if when <= now and name in specs:
                del self.due[name]
                self.start(specs[name])
                extra = {"child": name, "pid": self.procs[name].pid, "restarts": self.history[name].restarts}
                log.info("child restarted", extra=extra)

    def stop_all(self) -> None:
        """SIGTERM the children wave by wave (see :func:`stop_waves`); SIGKILL what outlives the grace."""
        self.stopping = True
        self.due.clear()
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
