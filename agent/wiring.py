"""The running agent's parts wired together: session, camera, desk, monitor, evidence, local page.

:func:`wire_monitor` builds them for ``telework agent --source`` (:mod:`agent.run` runs them):
one agent clock (:func:`agent.clock.clock_for`: the wall clock, or with ``--fast`` the frames'
stream time) shared by the desk and the monitor, so punches and detection events are stamped
alike; the desk's camera gate given to the monitor, so the camera runs only on duty; and how
the camera is opened again after a punch-out (:func:`camera_opener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.client import AgentSession
from agent.config import MonitorConfig

if TYPE_CHECKING:
    from agent.camera_gate import CameraGate
    from agent.cameras import Camera
    from agent.capture.sources import FrameSource
    from agent.control import ControlServer
    from agent.desk import Desk
    from agent.evidence import EvidenceRecord
    from agent.monitor import Monitor
    from agent.session_parts import SessionOptions
    from agent.source_spec import SourceSpec
    from agent.spool import Spool
    from agent.watch import RecordingEvidenceStore, WatchedPipeline

log = logging.getLogger(__name__)

LOCAL_EVIDENCE_KEEP = 100  # images kept for the local page; the spool holds what goes to the server


@dataclass(frozen=True)
class MonitorParts:
    """The pieces of a running agent, wired together."""

    session: AgentSession  # events and evidence to the gateway, through the on-disk spool
    desk: Desk  # punches, registration, incident actions, the camera gate: what the local page drives
    monitor: Monitor  # frames -> pipeline -> desk, only on duty
    evidence_dir: Path


def desk_language(config: MonitorConfig, environ: Mapping[str, str] | None = None) -> str:
    """ja or en: TELEWORK_AGENT_LANGUAGE, or for auto the LANG / LC_ALL of the session."""
    if config.agent_language != "auto":
        return config.agent_language
    from agent.i18n import language_of

    env = os.environ if environ is None else environ
    return language_of(env.get("LC_ALL") or env.get("LC_MESSAGES") or env.get("LANG"))


def camera_opener(
    spec: SourceSpec, fps: float, reopen: Callable[[], FrameSource] | None
) -> Callable[[], FrameSource] | None:
    """How the monitor opens the camera again after a punch-out closed it: a scene or a file from
    its start; None for a webcam (the same device is read again, which opens it)."""
    if spec.kind == "webcam":
        return None
    if reopen is not None:
        return reopen
    from agent.source_spec import open_source

    return lambda: open_source(spec, fps)[0]


def wire_monitor(
    config: MonitorConfig,
    pipeline: WatchedPipeline,
    opened: tuple[
        FrameSource, Callable[[], FrameSource] | None, Callable[[], dict[str, object] | None] | None
    ],
    spec: SourceSpec,
    session: AgentSession,
    tasks: list[str] | None,
    fast: bool,
) -> MonitorParts:
    """The desk and the monitor over ``session`` and the opened frame source
    (:func:`agent.run.open_monitor_source`: source, reopener, camera properties)."""
    from agent.cameras import Camera
    from agent.clock import clock_for
    from agent.config import agent_data_dir
    from agent.desk import Desk
    from agent.face_sync import TemplateSync
    from agent.monitor import Monitor

    source, reopen, camera = opened
    data_dir = agent_data_dir(config)
    evidence = evidence_store(config.agent_evidence_dir or data_dir / "evidence", session)
    clock = clock_for(fast)
    session.clock = clock.now  # gap and usage events too: one clock for every event of the agent
    desk = Desk(
        session,
        pipeline,
        evidence,
        tasks=tasks,
        template_path=config.agent_template,
        duty_path=data_dir / "duty.json",
        camera=camera,
        max_age_s=config.agent_punch_max_age_s,
        language=desk_language(config),
        event_clock=clock,
    )
    if isinstance(source, Camera):  # a webcam: the page can choose another
        desk.switch_camera = camera_switch(source, desk.camera_gate)
    if config.agent_template is not None:  # the server's template replaces it (agent/face_sync.py)
        sync = TemplateSync(pipeline.engine, config.agent_template, lambda m: setattr(pipeline, "matcher", m))
        session.on_template = sync.apply
    monitor = Monitor(
        desk,
        source,
        pipeline,
        evidence,
        realtime=not fast,
        reopen=reopen,
        clock=clock,
        gate=desk.camera_gate,
        opener=camera_opener(spec, pipeline.settings.analysis_fps, reopen),
    )
    return MonitorParts(session, desk, monitor, evidence.folder)


def camera_switch(camera: Camera, gate: CameraGate) -> Callable[[int, int, int], dict[str, Any]]:
    """The page's camera choice: the new camera is opened to check it, and closed again at once when
    the camera is off (off duty): it is read only on duty."""

    def switch(index: int, width: int, height: int) -> dict[str, Any]:
        properties = camera.switch(index, width, height)
        if not gate.status.on:
            camera.close()
        return properties

    return switch


def monitor_session(config: MonitorConfig, options: SessionOptions, spool: Spool) -> AgentSession:
    """The agent's one session to the gateway, through the on-disk spool."""
    return AgentSession(config.gateway_url, config.agent_token or "", options, name="agent", spool=spool)


def evidence_store(folder: Path, session: AgentSession) -> RecordingEvidenceStore:
    """The local evidence folder (the page shows the newest images); each record's images are
    also queued in the session's spool for upload."""
    from agent.spool import purpose_of
    from agent.watch import RecordingEvidenceStore

    evidence = RecordingEvidenceStore(folder, keep=LOCAL_EVIDENCE_KEEP)

    def upload(record: EvidenceRecord) -> None:
        for image in record.images:
            try:
                session.add_evidence(
                    image.path.read_bytes(), image.kind, purpose_of(record.reason), record.taken_at
                )
            except (sqlite3.Error, OSError) as exc:  # disk full, file gone: the agent goes on
                log.error(
                    "evidence image not kept for upload",
                    extra={"path": str(image.path), "error": f"{type(exc).__name__}: {exc}"},
                )

    evidence.forward = upload
    return evidence


@contextlib.asynccontextmanager
async def local_page(config: MonitorConfig, desk: Desk) -> AsyncIterator[ControlServer | None]:
    """The local page and control channel on 127.0.0.1 (None when turned off); closed on the way out."""
    if not config.agent_page:
        yield None
        return
    from agent.config import agent_data_dir
    from agent.control import ControlServer

    control = ControlServer(desk, asyncio.get_running_loop(), config.agent_page_port, agent_data_dir(config))
    try:
        yield control
    finally:
        await asyncio.to_thread(control.close)


def log_monitoring(
    config: MonitorConfig, pipeline: WatchedPipeline, parts: MonitorParts, control: ControlServer | None
) -> None:
    log.info(
        "agent monitoring",
        extra={
            "source": config.agent_source,
            "engine": pipeline.engine.name,
            "evidence_dir": str(parts.evidence_dir),
            "page": control.url if control is not None else None,
            "camera": parts.desk.camera_gate.status.why,
        },
    )
