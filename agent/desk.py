"""The teleworker's side of the running agent: punches, tasks, face registration, incident action, notices.

:class:`Desk` sits between the monitor and the session. To the monitor it is the emitter
(:class:`agent.ports.Emitter`: ``settings`` and ``emit``): an incident start passes through
:meth:`emit`, which carries out the current ``incident_action`` (``lock``: lock the screen;
``log``: nothing more), writes what happened into the event's trace and leaves a notice for
the user. To the control channel (CLI and local page) it offers :meth:`punch`,
:meth:`register` and :meth:`status`. Punch decisions are :func:`agent.punch.decide`; accepted
punches are emitted as DutyEvent/TaskEvent, refused ones are logged and kept in the recent list.

The duty state (on duty since when, current task) is kept in ``duty.json`` of the data folder
so a restarted agent still knows the user is on duty.

The camera runs only on duty (:mod:`agent.camera_gate`): the desk holds the gate. A punch-in
made off duty opens the camera, waits up to ``verify_s`` for a frame that verifies the user
(each frame checked afresh) and decides on it; accepted, the camera stays open for the duty
and the duty starts in the verified frame's state (emitted with the punch, same time).
Refused, it closes again. A punch-out closes it. Every event the desk emits is stamped by
the agent's one clock (:mod:`agent.clock`), as the monitor's are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.camera_gate import CameraGate, CameraStatus, DutyStart
from agent.clock import AgentClock, WallClock
from agent.face.engine import Image
from agent.face.enroll import ImageResult, assess, same_person
from agent.face.templates import Template, best_match
from agent.face_upload import Spooling, send_enrolled
from agent.i18n import reason_text, text
from agent.lock import LockResult, lock_screen, notify_desktop
from agent.ports import Payload, Session
from agent.punch import (
    DUTY_FIRST_STATE,
    DutyState,
    PunchDecision,
    PunchRequest,
    Verification,
    check_face,
    decide,
    may_register,
    state_problem,
)
from agent.watch import RecordingEvidenceStore, Snapshot, WatchedPipeline
from realtime.protocol import EARLIEST_TIME, LATEST_TIME, AgentSettings, IncidentPayload

log = logging.getLogger(__name__)

VERIFY_S = 5.0  # a punch-in with the camera off: how long to look for a frame that verifies the user


@dataclass(frozen=True)
class Notice:
    at: datetime
    key: str
    params: dict[str, Any]
    level: str = "info"  # info | warning

    def to_json(self, lang: str) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "level": self.level, "text": text(lang, self.key, **self.params)}


def duty_start(value: object) -> datetime | None:
    """Pure: a saved duty's start, or None when it is not an aware ISO time within the protocol's
    range (2000-9000): the duty is kept, only its start is unknown."""
    if not isinstance(value, str):
        return None
    try:
        started = datetime.fromisoformat(value)
    except ValueError:
        return None
    if started.tzinfo is None or not EARLIEST_TIME <= started <= LATEST_TIME:
        return None
    return started


def load_duty(path: Path | None) -> DutyState:
    if path is None or not path.is_file():
        return DutyState()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        task, since = data.get("task"), data.get("since")
        on_duty = data.get("on_duty") is True
        started = duty_start(since) if on_duty else None
        return DutyState(on_duty, task if on_duty and isinstance(task, str) and task else None, started)
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("duty state unreadable; starting off duty", extra={"path": str(path), "error": str(exc)})
        return DutyState()


def save_duty(path: Path | None, state: DutyState) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    since = None if state.since is None else state.since.isoformat()
    temporary.write_text(json.dumps({"on_duty": state.on_duty, "task": state.task, "since": since}))
    temporary.replace(path)


def camera_text(lang: str, status: CameraStatus) -> str:
    """What the page says about the camera: on or off, and why (the duty's start in local time)."""
    if status.why == "on_duty" and status.since is not None:
        return text(lang, "camera.on_duty_since", since=status.since.astimezone().strftime("%H:%M"))
    return text(lang, f"camera.{status.why}")


class Desk:
    """Punches, registration and incident actions of one running agent (use on the event loop)."""

    def __init__(
        self,
        session: Session,
        pipeline: WatchedPipeline,
        evidence: RecordingEvidenceStore | None = None,
        tasks: Sequence[str] | None = None,
        template_path: Path | None = None,
        duty_path: Path | None = None,
        camera: Callable[[], dict[str, Any] | None] | None = None,
        switch_camera: Callable[[int, int, int], dict[str, Any]] | None = None,
        locker: Callable[[], LockResult] = lock_screen,
        notifier: Callable[[str, str], bool] = notify_desktop,
        max_age_s: float = 2.0,
        language: str = "en",
        clock: Callable[[], float] = time.monotonic,
        event_clock: AgentClock | None = None,
        verify_s: float = VERIFY_S,
    ) -> None:
        self.session = session
        self.pipeline = pipeline
        self.evidence = evidence
        self.stand_in_tasks = tuple(tasks) if tasks else None
        self.template_path = template_path
        self.duty_path = duty_path
        self.camera = camera
        self.switch_camera = switch_camera  # (index, width, height) -> properties; None: not a webcam
        self.locker = locker
        self.notifier = notifier
        self.max_age_s = max_age_s
        self.language = language
        self.clock = clock  # monotonic seconds: how old a frame is
        self.event_clock = event_clock or WallClock()  # the time of every event (one clock with the monitor)
        self.verify_s = verify_s
        self.duty = load_duty(duty_path)
        self.camera_gate = CameraGate(self.duty.on_duty, self.duty.since)
        self.notices: deque[Notice] = deque(maxlen=20)
        self.punches: deque[PunchDecision] = deque(maxlen=20)
        self.locks: list[LockResult] = []
        self.enrolled_frames: dict[str, Image] = {}  # of the last registration, for the server

    # ------------------------------------------------------------ emitter for the monitor

    @property
    def settings(self) -> AgentSettings:
        return self.session.settings

    def emit(self, payload: Payload, ts: datetime | None = None) -> object:
        if isinstance(payload, IncidentPayload) and payload.phase == "start":
            payload = self._incident_action(payload)
        return self.session.emit(payload, ts=ts or self.event_clock.now())

    def _incident_action(self, payload: IncidentPayload) -> IncidentPayload:
        action = self.settings.incident_action
        if action == "lock":
            result = self.locker()
            self.locks.append(result)
            trace = result.trace()
            key = "notice.lock" if result.locked else "notice.lock_failed"
            self._notice(key, {"kind": payload.kind, "detail": result.detail or ""}, "warning")
            if not result.locked:
                log.warning("screen not locked", extra={"kind": payload.kind, "detail": result.detail})
        else:
            trace = {"action": "log"}
            self._notice("notice.log", {"kind": payload.kind}, "warning")
        return payload.model_copy(update={"trace": {**(payload.trace or {}), "incident_action": trace}})

    def _notice(self, key: str, params: dict[str, Any], level: str = "info") -> None:
        notice = Notice(self.event_clock.now(), key, params, level)
        self.notices.append(notice)
        if level == "warning":
            self.notifier(text(self.language, "title"), text(self.language, key, **params))

    # --------------------------------------------------------------------- punches

    def offered_tasks(self) -> tuple[str, ...] | None:
        """The tasks the server offers this user: ``session.tasks`` (the welcome's list, replaced by
        each ``tasks`` frame). When the server offers none (says nothing, or its tenant has no
        tasks), the stand-in list of TELEWORK_AGENT_TASKS; None: any task name is accepted."""
        return self.session.tasks or self.stand_in_tasks

    async def punch(self, request: PunchRequest) -> PunchDecision:
        """Decide on ``request`` from a fresh check of the camera; emit an accepted punch's events.

        With the camera on (on duty) the latest frame is checked; off duty a punch-in opens the
        camera and looks for a frame that verifies the user (:meth:`_verify_opened`)."""
        opening = not self.camera_gate.on_duty and (
            state_problem(request, self.duty, self.offered_tasks()) is None
        )
        if not opening:
            return self._decide(request, await asyncio.to_thread(self.pipeline.verify_latest))
        with self.camera_gate.use("verifying"):
            return self._decide(request, await self._verify_opened())

    async def _verify_opened(self) -> Verification | None:
        """The first frame of the just-opened camera that verifies the user, within ``verify_s``;
        else the last frame's verification (None: no frame came)."""
        seen = self.pipeline.seq
        deadline = self.clock() + self.verify_s
        verification: Verification | None = None
        while (left := deadline - self.clock()) > 0:
            snapshot = await self._next_snapshot(seen, left)
            if snapshot is None:
                break
            seen = snapshot.seq
            verification = await asyncio.to_thread(self.pipeline.verify_latest)
            if check_face(verification, self.pipeline.threshold(), self.clock(), self.max_age_s).ok:
                break
        return verification

    async def _next_snapshot(self, after: int, timeout_s: float) -> Snapshot | None:
        """The next analysed frame after snapshot ``after`` (asked of the gate: a ``--fast`` file
        gives frames off duty only when asked), or None after ``timeout_s``."""
        self.camera_gate.want_frame()
        return await asyncio.to_thread(self.pipeline.wait_next, after, timeout_s)

    def _decide(self, request: PunchRequest, verification: Verification | None) -> PunchDecision:
        at = self.event_clock.now()
        decision = decide(
            request,
            verification,
            self.duty,
            self.pipeline.threshold(),
            self.clock(),
            self.offered_tasks(),
            self.max_age_s,
            at=at,
        )
        self.punches.append(decision)
        extra = {"kind": request.kind, "task": request.task, "reason": decision.reason, **decision.params}
        if not decision.accepted:
            log.info("punch refused", extra=extra)  # the teleworker is told; no operator matter
            return decision
        for payload in decision.payloads:
            self.session.emit(payload, ts=at)
        self.duty = decision.state
        save_duty(self.duty_path, self.duty)
        if request.kind == "in":
            self.camera_gate.start_duty(DutyStart(at, DUTY_FIRST_STATE))
        elif request.kind == "out":
            self.camera_gate.end_duty()
        log.info("punch accepted", extra=extra)
        return decision

    def describe(self, decision: PunchDecision, lang: str) -> str:
        if decision.accepted:
            return text(lang, f"accepted.{decision.request.kind}", task=decision.request.task or "")
        return text(lang, "refused", reason=reason_text(lang, decision.reason, decision.params))

    # ---------------------------------------------------------------- registration

    async def register(self, count: int = 3, timeout_s: float = 20.0) -> dict[str, Any]:
        """Register the user's face from the next ``count`` frames that pass the quality gate.

        Replacing a template needs the current user verified (see :func:`agent.punch.may_register`).
        """
        on_duty = self.camera_gate.on_duty
        with self.camera_gate.use("registering"):
            return await self._register(count, timeout_s, opened=not on_duty)

    async def _register(self, count: int, timeout_s: float, opened: bool) -> dict[str, Any]:
        pipeline = self.pipeline
        current: Verification | None = None
        if pipeline.has_template:  # the camera just opened: look for the user in its first frames
            current = await (self._verify_opened() if opened else asyncio.to_thread(pipeline.verify_latest))
        verdict = may_register(
            current, pipeline.threshold(), self.clock(), pipeline.has_template, self.max_age_s
        )
        if not verdict.ok:
            return {"ok": False, "reason": verdict.reason, "params": verdict.params}
        collected, reasons = await self._collect(count, timeout_s)
        accepted = []  # of one person: a frame too far from the others is not taken (enroll's gate)
        for result in same_person(pipeline.engine, collected):
            if result.accepted:
                accepted.append(result)
            elif result.reason is not None:
                reasons.add(result.reason)
        embeddings = tuple(r.embedding for r in accepted if r.embedding is not None)
        if not embeddings:
            detail = "; ".join(sorted(reasons)) or "no frame"
            return {"ok": False, "reason": "enroll_rejected", "params": {"detail": detail}}
        engine = pipeline.engine
        template = Template(engine.name, engine.model_version, embeddings)
        if self.template_path is not None:
            template.save(self.template_path)
        if isinstance(self.session, Spooling):  # the server is the one source of the template
            send_enrolled(self.session, [self.enrolled_frames[r.name] for r in accepted])
        pipeline.replace_matcher(lambda e: best_match(template, e))
        log.info("face registered", extra={"images": len(accepted), "template": str(self.template_path)})
        return {"ok": True, "count": len(accepted)}

    async def _collect(self, count: int, timeout_s: float) -> tuple[list[ImageResult], set[str]]:
        deadline = time.monotonic() + timeout_s
        seq = self.pipeline.seq
        accepted: list[ImageResult] = []
        reasons: set[str] = set()
        self.enrolled_frames.clear()
        while len(accepted) < count and (left := deadline - time.monotonic()) > 0:
            snapshot = await self._next_snapshot(seq, left)
            if snapshot is None:
                break
            seq = snapshot.seq
            if snapshot.image is None:
                reasons.add("camera unavailable")
                continue
            result = await asyncio.to_thread(self._assess, f"frame {seq}", snapshot.image)
            if result.accepted:
                accepted.append(result)
                self.enrolled_frames[result.name] = snapshot.image
            elif result.reason:
                reasons.add(result.reason)
        return accepted, reasons

    def _assess(self, name: str, image: Image) -> ImageResult:
        with self.pipeline.engine_lock:
            return assess(self.pipeline.engine, name, image)

    # ----------------------------------------------------------------------- status

    def status(self, lang: str) -> dict[str, Any]:
        """Everything the page shows, JSON-ready, texts in ``lang``."""
        snapshot = self.pipeline.latest
        threshold = self.pipeline.threshold()
        face: dict[str, Any] | None = None
        if snapshot is not None:
            best = snapshot.verification().best
            face = {
                "faces": len(snapshot.faces),
                "distance": None if best is None else round(best, 3),
                "threshold": round(threshold, 3),
                "age_s": round(self.clock() - snapshot.at, 1),
            }
        camera = self.camera_gate.status
        watching = self.camera_gate.on_duty  # states are the duty's: none shown off duty
        state = snapshot.state if snapshot is not None and watching else None
        record = self.evidence.last if self.evidence is not None else None
        return {
            "state": state,
            "state_text": text(lang, f"state.{state or ('none' if watching else 'off')}"),
            "camera_status": {**camera.to_json(), "text": camera_text(lang, camera)},
            "on_duty": self.duty.on_duty,
            "task": self.duty.task,
            "tasks": list(self.offered_tasks() or ()),
            "face": face,
            "has_template": self.pipeline.has_template,
            "camera": self.camera() if self.camera is not None else None,
            "camera_switchable": self.switch_camera is not None,
            "settings": self.settings.model_dump(),
            "evidence": None if record is None else record.trace(),
            "notices": [n.to_json(lang) for n in reversed(self.notices)],
            "punches": [{**d.to_json(), "text": self.describe(d, lang)} for d in reversed(self.punches)],
        }
