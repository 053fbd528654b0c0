"""Face-verified punches (pure): accept or refuse a work/task punch from what the camera saw just now.

A punch (work start/end, task start/end) is accepted only when the latest analysed
frame, at most ``max_age_s`` old, shows a face within the current threshold of the
user's template. Otherwise it is refused with a reason the user is shown: the camera
is unavailable, no face is in view, the face does not match (with the distance and
the threshold), or the punch makes no sense in the current duty state (already on
duty, no task running, a task the server does not offer).

An accepted punch gives the payloads to emit (``DutyPayload(verified=True)`` and/or
``TaskPayload``) and the new :class:`DutyState`; nothing here does I/O. An accepted punch-in
also gives the duty's first state, ``StatePayload("present")`` with the verification in its
trace: the verified face is the user in front of the camera, so presence starts with the duty
(the builder opens it at the punch's time). Another face in the same frame is left to the
state machine, which judges it from there with its usual hysteresis and incident evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from agent.detect.classify import Observation
from realtime.protocol import DutyPayload, PresenceState, StatePayload, TaskPayload

PunchKind = Literal["in", "out", "task_start", "task_end"]
PUNCH_KINDS: tuple[PunchKind, ...] = ("in", "out", "task_start", "task_end")
DEFAULT_MAX_AGE_S = 2.0
DUTY_FIRST_STATE: PresenceState = "present"  # a verified punch-in: the user's face is in view
PunchPayload = DutyPayload | TaskPayload | StatePayload

# reason codes (texts in agent.i18n, key "reason.<code>")
CAMERA_UNAVAILABLE = "camera_unavailable"
NO_RECENT_FRAME = "no_recent_frame"
NO_FACE = "no_face"
NOT_VERIFIED_YET = "not_verified_yet"
MISMATCH = "mismatch"
ALREADY_ON_DUTY = "already_on_duty"
NOT_ON_DUTY = "not_on_duty"
NO_TASK = "no_task"
UNKNOWN_TASK = "unknown_task"
TASK_REQUIRED = "task_required"
ALREADY_ON_TASK = "already_on_task"


@dataclass(frozen=True)
class Verification:
    """What the latest analysed frame says about who is in front of the camera.

    ``at``: monotonic seconds when the frame was analysed; ``camera``: False when no frame
    came (``reason`` says why); ``distances``: each visible face's distance to the user's
    template (None: that face is not embedded yet).
    """

    at: float
    camera: bool
    distances: tuple[float | None, ...] = ()
    reason: str | None = None

    @property
    def best(self) -> float | None:
        known = [d for d in self.distances if d is not None]
        return min(known) if known else None


def verification_of(obs: Observation, at: float) -> Verification:
    """The Verification of a pipeline observation analysed at monotonic time ``at``."""
    if obs.stats is None:
        return Verification(at, camera=False, reason=obs.reason or "no frame from the camera")
    return Verification(at, camera=True, distances=tuple(f.distance for f in obs.faces))


@dataclass(frozen=True)
class DutyState:
    on_duty: bool = False
    task: str | None = None
    since: datetime | None = None  # the accepted punch-in's time (None: off duty, or not known)


@dataclass(frozen=True)
class PunchRequest:
    kind: PunchKind
    task: str | None = None


@dataclass(frozen=True)
class FaceVerdict:
    """Whether the face check passed, why not, and the numbers (for the message and the log)."""

    ok: bool
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PunchDecision:
    request: PunchRequest
    accepted: bool
    reason: str | None  # reason code when refused
    params: dict[str, Any]  # numbers/names for the reason's text
    state: DutyState  # the duty state after the punch (unchanged when refused)
    payloads: tuple[PunchPayload, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.request.kind,
            "task": self.request.task,
            "accepted": self.accepted,
            "reason": self.reason,
            "params": self.params,
            "on_duty": self.state.on_duty,
            "current_task": self.state.task,
        }


def check_face(
    verification: Verification | None, threshold: float, now: float, max_age_s: float
) -> FaceVerdict:
    """Is the user's face verified at ``now``: a recent latest frame with a face within ``threshold``."""
    if verification is None:
        return FaceVerdict(False, NO_RECENT_FRAME, {"max_age_s": max_age_s})
    age = now - verification.at
    if not verification.camera:
        return FaceVerdict(
            False, CAMERA_UNAVAILABLE, {"detail": verification.reason or "no frame from the camera"}
        )
    if age > max_age_s:
        return FaceVerdict(False, NO_RECENT_FRAME, {"age_s": round(age, 1), "max_age_s": max_age_s})
    if not verification.distances:
        return FaceVerdict(False, NO_FACE)
    best = verification.best
    if best is None:
        return FaceVerdict(False, NOT_VERIFIED_YET)
    numbers = {"distance": round(best, 2), "threshold": round(threshold, 2)}
    if best > threshold:
        return FaceVerdict(False, MISMATCH, numbers)
    return FaceVerdict(True, None, numbers)


def parse_request(kind: str, task: str | None = None) -> PunchRequest:
    """A PunchRequest from untrusted input; ValueError says what was expected."""
    if kind not in PUNCH_KINDS:
        raise ValueError(f"punch kind: expected one of {', '.join(PUNCH_KINDS)}, got {kind!r}")
    name = task.strip() if isinstance(task, str) else None
    if kind == "task_start":
        if not name:
            raise ValueError("task_start: expected a task name, got none")
        try:
            TaskPayload(task=name)  # the protocol's bounds: the one definition of a valid task name
        except ValidationError as exc:
            raise ValueError(f"task name: {exc.errors()[0]['msg']}") from None
    return PunchRequest(kind, name if kind == "task_start" else None)


def state_problem(
    request: PunchRequest, state: DutyState, tasks: Sequence[str] | None
) -> tuple[str, dict[str, Any]] | None:
    """Why ``request`` cannot apply to ``state`` (reason code and params), or None when it can."""
    kind = request.kind
    if kind == "in" and state.on_duty:
        return ALREADY_ON_DUTY, {}
    if kind in ("out", "task_start", "task_end") and not state.on_duty:
        return NOT_ON_DUTY, {}
    if kind == "task_end" and state.task is None:
        return NO_TASK, {}
    if kind == "task_start":
        if not request.task:
            return TASK_REQUIRED, {}
        if tasks is not None and request.task not in tasks:
            return UNKNOWN_TASK, {"task": request.task, "tasks": ", ".join(tasks)}
        if request.task == state.task:
            return ALREADY_ON_TASK, {"task": request.task}
    return None


def first_state(verification: Verification, verdict: FaceVerdict) -> StatePayload:
    """The duty's first state, from the frame that verified the punch-in."""
    trace = {
        "from": None,
        "to": DUTY_FIRST_STATE,
        "rule": "punch_in_verified",
        "faces": len(verification.distances),
        **verdict.params,
    }
    return StatePayload(state=DUTY_FIRST_STATE, trace=trace)


def _apply(
    request: PunchRequest, state: DutyState, at: datetime | None
) -> tuple[DutyState, tuple[DutyPayload | TaskPayload, ...]]:
    if request.kind == "in":
        return DutyState(True, None, at), (DutyPayload(on_duty=True, verified=True),)
    if request.kind == "out":
        closing: tuple[DutyPayload | TaskPayload, ...] = (TaskPayload(task=None),) if state.task else ()
        return DutyState(False, None), (*closing, DutyPayload(on_duty=False, verified=True))
    if request.kind == "task_start":
        return replace(state, on_duty=True, task=request.task), (TaskPayload(task=request.task),)
    return replace(state, on_duty=True, task=None), (TaskPayload(task=None),)


def decide(
    request: PunchRequest,
    verification: Verification | None,
    state: DutyState,
    threshold: float,
    now: float,
    tasks: Sequence[str] | None = None,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    at: datetime | None = None,
) -> PunchDecision:
    """Accept or refuse ``request``. The duty state is checked first (no face needed to be told
    you are already on duty), then the face. ``tasks``: the task names offered (None: any name);
    ``at``: the punch's time on the agent's clock (kept as the duty's start)."""
    problem = state_problem(request, state, tasks)
    if problem is not None:
        return PunchDecision(request, False, problem[0], problem[1], state)
    verdict = check_face(verification, threshold, now, max_age_s)
    if not verdict.ok or verification is None:
        return PunchDecision(request, False, verdict.reason, verdict.params, state)
    new_state, payloads = _apply(request, state, at)
    starting = (first_state(verification, verdict),) if request.kind == "in" else ()
    return PunchDecision(request, True, None, verdict.params, new_state, (*payloads, *starting))


def may_register(
    verification: Verification | None,
    threshold: float,
    now: float,
    has_template: bool,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> FaceVerdict:
    """Registering a new face replaces the template: allowed with no template yet, or while the
    current user is verified (so someone else at the PC cannot register their own face)."""
    if not has_template:
        return FaceVerdict(True)
    return check_face(verification, threshold, now, max_age_s)
