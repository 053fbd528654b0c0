"""``telework agent``: one real session (or simulated agents) until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.client import AgentSession
from agent.config import AgentConfig, MonitorConfig, load_agent_config, load_monitor_config
from agent.session_parts import SessionOptions
from agent.tls import tls_of
from core.config import ConfigError
from core.process import async_stop_on_signals

if TYPE_CHECKING:
    from agent.capture.sources import FrameSource
    from agent.face.engine import FaceEngine
    from agent.face.templates import Template
    from agent.monitor import Monitor, MonitorStats
    from agent.source_spec import SourceSpec
    from agent.watch import WatchedPipeline

log = logging.getLogger(__name__)

REFUSED = 2  # exit code when the gateway refused every session (bad token, version)

DELIVER_TIMEOUT_S = 10.0  # after a file source ends: how long to wait for the gateway to ack its events


def options_of(config: AgentConfig) -> SessionOptions:
    return SessionOptions(
        batch_max=config.agent_batch_max,
        backoff_base_s=config.agent_backoff_base_s,
        backoff_cap_s=config.agent_backoff_cap_s,
        open_timeout_s=config.agent_open_timeout_s,
        upload_kbps=config.agent_upload_kbps,
        upload_chunk_bytes=config.agent_upload_chunk_bytes,
        usage_report_s=config.agent_usage_report_s,
        tls=tls_of(config),  # TELEWORK_AGENT_ALLOW_INSECURE, _TLS_CA_FILE, _TLS_PIN (agent/tls.py)
    )


def tokens_of(config: AgentConfig) -> dict[str, str]:
    """The agents to run: every token of the tokens file, or the one token."""
    from agent.simulate import load_tokens

    if config.agent_tokens_file is not None:
        return load_tokens(config.agent_tokens_file)
    if config.agent_token:
        return {"agent": config.agent_token}
    raise ConfigError("TELEWORK_AGENT_TOKEN", "required (or --tokens-file / TELEWORK_AGENT_TOKENS_FILE)")


def run_agent(
    gateway_url: str | None,
    token: str | None,
    tokens_file: Path | None,
    simulate: bool,
    events_per_s: float | None,
) -> int:
    """Run until a signal (exit 0) or until the gateway refused every session (exit 2)."""
    config = load_agent_config(
        gateway_url=gateway_url,
        agent_token=token,
        agent_tokens_file=tokens_file,
        agent_events_per_s=events_per_s,
    )
    tokens = tokens_of(config)
    tls_of(config)  # a refused ws:// URL, CA file or pin is one line before anything starts
    return asyncio.run(_main(config, tokens, simulate))


async def _main(config: AgentConfig, tokens: dict[str, str], simulate: bool) -> int:
    from agent.simulate import run_simulation

    with async_stop_on_signals(asyncio.Event()) as stop:
        if simulate:
            options = options_of(config)
            sessions = await run_simulation(
                config.gateway_url, tokens, config.agent_events_per_s, stop, options
            )
        else:
            sessions = await hold_sessions(config, tokens, stop)
    fatal = refused([s.fatal for s in sessions])
    if fatal is not None:
        raise ConfigError("TELEWORK_AGENT_TOKEN", f"the gateway refused the session: {fatal}")
    return 0


async def hold_sessions(
    config: AgentConfig, tokens: dict[str, str], stop: asyncio.Event
) -> list[AgentSession]:
    """No --source: one session per token with heartbeats only, until a stop or a session's end."""
    log.warning(
        "no --source given: holding the session with heartbeats only; use --source "
        "webcam[:INDEX] | video:PATH | folder:PATH | scene:demo, or --simulate for scripted events"
    )
    options = options_of(config)
    sessions = [AgentSession(config.gateway_url, t, options, name=n) for n, t in tokens.items()]
    async with running(*sessions) as runners:
        await wait_first(stop, *runners)
    return sessions


def refused(fatals: Sequence[str | None]) -> str | None:
    """Pure: the first session's refusal when the gateway refused every session, else None."""
    if fatals and all(f is not None for f in fatals):
        return fatals[0]
    return None


@contextlib.asynccontextmanager
async def running(*sessions: AgentSession) -> AsyncIterator[list[asyncio.Task[None]]]:
    """The sessions' connect loops as tasks; on the way out all are stopped together, then awaited."""
    runners = [asyncio.create_task(s.run(), name=f"session-{s.name}") for s in sessions]
    try:
        yield runners
    finally:
        for session in sessions:
            session.stop()
        await asyncio.gather(*runners, return_exceptions=True)


async def wait_first(stop: asyncio.Event, *tasks: asyncio.Task[Any]) -> None:
    """Until ``stop`` is set or one of ``tasks`` ends (the tasks keep running)."""
    waiter = asyncio.create_task(stop.wait(), name="stop-waiter")
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)


async def wait_at_most(timeout_s: float, awaitable: Awaitable[object]) -> None:
    """Await ``awaitable`` for at most ``timeout_s``; running out of time is not an error here."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await awaitable


# ------------------------------------------------------------------ real pipeline


def demo_template(engine: FaceEngine) -> Template:
    """The template of scene:demo's user, enrolled from the sample photo (scaled up 3x: it is 112 px)."""
    import cv2
    import numpy as np

    from agent.face.enroll import enroll
    from agent.face.quality import QualityLimits
    from agent.source_spec import DEMO_USER, sample_images

    photo = cv2.imread(str(sample_images() / DEMO_USER), cv2.IMREAD_COLOR)
    if photo is None:
        raise ConfigError("TELEWORK_AGENT_SOURCE", f"scene:demo: cannot read the sample photo {DEMO_USER}")
    image = np.asarray(cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    result = enroll(engine, [(DEMO_USER, image)], QualityLimits(min_face_px=60, min_sharpness=0.0))
    if result.template is None:
        reasons = [r.reason for r in result.rejected]
        raise ConfigError("TELEWORK_AGENT_SOURCE", f"scene:demo: cannot enroll the demo user: {reasons}")
    return result.template


def build_monitor_parts(
    config: MonitorConfig, source: str, template_path: Path | None
) -> tuple[WatchedPipeline, SourceSpec]:
    """The face engine, template and pipeline for ``--source``; ConfigError names what is wrong."""
    from agent.face.select import load_engine
    from agent.face.templates import Template, TemplateError, best_match
    from agent.source_spec import SourceSpecError, parse_source
    from agent.watch import WatchedPipeline

    try:
        spec = parse_source(source)
    except SourceSpecError as exc:
        raise ConfigError("TELEWORK_AGENT_SOURCE", str(exc)) from None
    engine = load_engine(config.agent_face_engine, config.agent_model_dir, config.agent_model_pack)
    try:
        if template_path is not None:
            template = Template.load(template_path)
            template.check_engine(engine)
        elif spec.kind == "scene":
            template = demo_template(engine)
        else:
            raise ConfigError(
                "TELEWORK_AGENT_TEMPLATE", "required with --source (enroll first: telework agent enroll)"
            )
    except TemplateError as exc:
        raise ConfigError("TELEWORK_AGENT_TEMPLATE", str(exc)) from None
    from agent.detect.detection import detection_from_config

    pipeline = WatchedPipeline(engine, lambda e: best_match(template, e))
    pipeline.detection = detection_from_config(config)  # TELEWORK_AGENT_DETECT_WIDTH, _MAX_UPSAMPLE
    return pipeline, spec


def run_monitor(
    gateway_url: str | None,
    token: str | None,
    source: str | None,
    template: Path | None,
    evidence_dir: Path | None = None,
    fast: bool = False,
    camera: int | None = None,
    resolution: str | None = None,
    page_port: int | None = None,
    data_dir: Path | None = None,
) -> int:
    """``telework agent --source``: the real pipeline on a frame source, events through one session;
    the local page and control channel on 127.0.0.1 (punches, registration)."""
    config = load_monitor_config(
        gateway_url=gateway_url,
        agent_token=token,
        agent_source=source,
        agent_template=template,
        agent_evidence_dir=evidence_dir,
        agent_camera=camera,
        agent_resolution=resolution,
        agent_page_port=page_port,
        agent_data_dir=data_dir,
    )
    if not config.agent_token:
        raise ConfigError("TELEWORK_AGENT_TOKEN", "required with --source")
    chosen = source_of(config)
    tls_of(config)  # a refused ws:// URL, CA file or pin is one line before the pipeline loads
    pipeline, spec = build_monitor_parts(config, chosen, config.agent_template)
    return asyncio.run(_monitor_main(config, pipeline, spec, fast))


def source_of(config: MonitorConfig) -> str:
    """The --source to use: ``--camera N`` alone means ``webcam:N``; with ``webcam`` it picks the index."""
    source = config.agent_source
    if config.agent_camera is not None and (source is None or source.split(":")[0] == "webcam"):
        return f"webcam:{config.agent_camera}"
    if source is None:
        raise ConfigError("TELEWORK_AGENT_SOURCE", "required (or --camera INDEX)")
    return source


def open_monitor_source(
    config: MonitorConfig, spec: SourceSpec, fps: float
) -> tuple[FrameSource, Callable[[], FrameSource] | None, Callable[[], dict[str, object] | None] | None]:
    """The frame source (a webcam at the configured resolution), its reopener, and its properties."""
    from agent.cameras import Camera, parse_resolution
    from agent.capture.sources import FrameSourceError
    from agent.source_spec import open_source

    try:
        if spec.kind == "webcam":
            try:
                width, height = parse_resolution(config.agent_resolution)
            except ValueError as exc:
                raise ConfigError("TELEWORK_AGENT_RESOLUTION", str(exc)) from None
            camera = Camera(spec.index, width, height)
            return camera, None, camera.properties
        source, reopen = open_source(spec, fps)
    except FrameSourceError as exc:
        raise ConfigError("TELEWORK_AGENT_SOURCE", str(exc)) from None
    return source, reopen, None


async def _monitor_main(
    config: MonitorConfig, pipeline: WatchedPipeline, spec: SourceSpec, fast: bool
) -> int:
    """The steps of ``telework agent --source``; the stop runs in reverse: session, local page, spool.

    The camera was opened once to check it (:func:`open_monitor_source`); the monitor closes it
    at once unless the user is on duty (it opens again for a punch-in)."""
    from agent.spool import open_spool
    from agent.wiring import local_page, log_monitoring, monitor_session, wire_monitor

    with async_stop_on_signals(asyncio.Event()) as stop:
        async with contextlib.AsyncExitStack() as stack:
            # Every event and evidence image stays in the on-disk spool until the server has it:
            # nothing is lost across a disconnect, a gateway restart, an agent crash or a reboot.
            spool = stack.enter_context(contextlib.closing(open_spool(config)))
            session = monitor_session(config, options_of(config), spool)
            opened = open_monitor_source(config, spec, pipeline.settings.analysis_fps)
            tasks = task_names(config.agent_tasks)
            parts = wire_monitor(config, pipeline, opened, spec, session, tasks, fast)
            control = await stack.enter_async_context(local_page(config, parts.desk))
            log_monitoring(config, pipeline, parts, control)
            (runner,) = await stack.enter_async_context(running(parts.session))
            # Start with the server's settings when the gateway answers soon; run offline otherwise.
            await wait_at_most(config.agent_open_timeout_s, parts.session.connected.wait())
            watcher = await watch(parts.monitor, parts.session, runner, stop)
    return outcome(None if watcher.cancelled() else watcher.exception(), parts.session.fatal)


def task_names(agent_tasks: str) -> list[str] | None:
    """Pure: TELEWORK_AGENT_TASKS (comma-separated) as names; None when it names none."""
    return [t.strip() for t in agent_tasks.split(",") if t.strip()] or None


async def watch(
    monitor: Monitor, session: AgentSession, runner: asyncio.Task[None], stop: asyncio.Event
) -> asyncio.Task[MonitorStats]:
    """Run the monitor until a stop, the session's end (a refusal) or the source's end; after the
    end of a source (a file) what it emitted is delivered first. Returns the finished monitor task."""
    watcher = asyncio.create_task(monitor.run(stop), name="monitor")
    try:
        await wait_first(stop, watcher, runner)
        if source_ended(watcher.done(), stop.is_set(), session.fatal):
            await wait_at_most(DELIVER_TIMEOUT_S, session.wait_acked())
    finally:
        stop.set()
        await asyncio.wait([watcher])
    return watcher


def source_ended(monitor_done: bool, stopped: bool, fatal: str | None) -> bool:
    """Pure: the monitor ended by itself (its source ran out), not by a stop or a refused session."""
    return monitor_done and not stopped and fatal is None


def outcome(monitor_error: BaseException | None, fatal: str | None) -> int:
    """Pure: 0, or the monitor's failure raised, or the gateway's refusal as a ConfigError."""
    if monitor_error is not None:
        raise monitor_error
    if fatal is not None:
        raise ConfigError("TELEWORK_AGENT_TOKEN", f"the gateway refused the session: {fatal}")
    return 0


def run_enroll(
    out: Path, files: list[Path] | None, webcam: int | None, count: int = 5
) -> tuple[int, list[str]]:
    """``telework agent enroll``: a template from files or the webcam; (images accepted, rejection lines)."""
    from agent.capture.sources import FrameSourceError, WebcamSource
    from agent.face.enroll import ImageLoadError, capture, enroll, load_images
    from agent.face.select import load_engine

    config = load_agent_config()
    engine = load_engine(config.agent_face_engine, config.agent_model_dir, config.agent_model_pack)
    if files:
        try:
            result = enroll(engine, load_images(files))
        except ImageLoadError as exc:
            raise ConfigError("--from-files", str(exc)) from None
    else:
        try:
            source = WebcamSource(webcam or 0)
        except FrameSourceError as exc:
            raise ConfigError("--webcam", str(exc)) from None
        try:
            result = capture(engine, source, count)
        finally:
            source.close()
    rejected = [f"{r.name}: {r.reason}" for r in result.rejected]
    if result.template is None:
        where = "--from-files" if files else "--webcam"
        raise ConfigError(where, "no image accepted: " + "; ".join(rejected))
    result.template.save(out)
    return len(result.accepted), rejected


# ------------------------------------------------------------ control channel commands


def control_folder(data_dir: Path | None) -> Path:
    """The running agent's data folder (its control.json): --data-dir, TELEWORK_AGENT_DATA_DIR or default."""
    from agent.config import agent_data_dir

    return agent_data_dir(load_agent_config(agent_data_dir=data_dir))


def cli_language(environ: Mapping[str, str] | None = None) -> str:
    from agent.wiring import desk_language

    env = os.environ if environ is None else environ
    config = load_monitor_config(env)
    return desk_language(config, env)


def run_punch(kind: str, task: str | None, data_dir: Path | None) -> tuple[int, str]:
    """``telework agent punch in|out`` / ``task start NAME|end`` through the running agent.

    (exit code, message): 0 accepted, 1 refused (the message says why)."""
    from agent.control import ControlError, request

    lang = cli_language()
    body: dict[str, object] = {"kind": kind}
    if task is not None:
        body["task"] = task
    try:
        status, reply = request(control_folder(data_dir), "POST", f"/api/punch?lang={lang}", body)
    except ControlError as exc:
        raise ConfigError("TELEWORK_AGENT_DATA_DIR", str(exc)) from None
    message = str(reply.get("message") or reply.get("error") or f"HTTP {status}")
    return (0 if status == 200 else 1), message


def page_url(data_dir: Path | None) -> str:
    """``telework agent page``: the URL (with the token) of the running agent's local page."""
    from agent.control import ControlError, read_control_file

    try:
        info = read_control_file(control_folder(data_dir))
    except ControlError as exc:
        raise ConfigError("TELEWORK_AGENT_DATA_DIR", str(exc)) from None
    return f"{info.url}/?token={info.token}"
