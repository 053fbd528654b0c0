"""``telework agent try``: the face pipeline on a frame source without a gateway, as a state timeline.

A user tuning a camera or a threshold sees what the agent would decide: every state change
with its decision trace (the rule and how long the label held against what it needed, the
faces with their distances against the threshold and their sizes, the frame's brightness),
the data the local page shows for the latest frame, here for every transition.

:func:`timeline` is the logic: analysed frames ``(t, image or None)`` through a
:class:`~agent.detect.pipeline.Pipeline`, one :class:`~agent.dry_run_text.Row` per transition,
stamped by a function of the frame's time (:mod:`agent.dry_run_text` formats the rows, pure).
:func:`analysed` reads a source: as fast as the CPU allows (files, folders and scenes by
default; their ``t`` is the stream time) or on the deadline schedule of :mod:`agent.pacing` (a
webcam always; a file with ``--realtime``). :func:`run_try` is the command: the agent's own
settings (``TELEWORK_AGENT_*``: engine, template, source, camera) and pipeline, with the
detection settings of the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.dry_run_text import TRY_FIELDS, Played, Row, csv_text, settings_text
from agent.pacing import FramePacer
from core.config import ConfigError
from core.errors import OperatorError
from core.private import write_private
from realtime.protocol import AgentSettings
from realtime.protocol.agent_settings import SettingValue

if TYPE_CHECKING:  # the parser of `telework agent try` imports this module: no OpenCV, numpy, dlib here
    from agent.capture.sources import FrameSource
    from agent.detect.pipeline import Pipeline
    from agent.detect.state_machine import Transition
    from agent.face.engine import Image

EPSILON = 1e-6
AnalysedFrame = tuple[float, "Image | None"]  # (seconds on the source's clock, the frame; None: no frame)


def row_of(transition: Transition, at: datetime) -> Row:
    return Row(at, transition.t, transition.previous, transition.state, transition.trace)


def timeline(
    frames: Iterable[AnalysedFrame], pipeline: Pipeline, stamp: Callable[[float], datetime]
) -> Iterator[Row]:
    """A row for each state change the pipeline decides on ``frames`` (in time order)."""
    for t, image in frames:
        result = pipeline.missing(t) if image is None else pipeline.process(t, image)
        if result.transition is not None:
            yield row_of(result.transition, stamp(t))


# --------------------------------------------------------------------------- I/O


def analysed(
    source: FrameSource,
    period: float,
    pacer: FramePacer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[AnalysedFrame]:
    """The frames of ``source`` to analyse, one per ``period`` seconds of its clock.

    Without ``pacer``: as fast as they are read (a file's frames already come ``period`` apart).
    With one: each on its deadline; a file played so skips the frames of missed slots, a webcam's
    frame is timed by its slot (seconds since the first)."""
    while not source.ended:
        at = None if pacer is None else pacer.wait_sync(period, sleep).at_s
        item = _read(source, at)
        if item is None:
            return
        yield item


def _read(source: FrameSource, at: float | None) -> AnalysedFrame | None:
    """The next frame at or after ``at`` on the source's clock; None when the source ended."""
    while True:
        before = source.t  # None: a webcam, whose frame is timed by its slot
        frame = source.read()
        if frame is None and source.ended:
            return None
        image = None if frame is None else frame.image
        t = before if frame is None or before is None else frame.t
        if t is None:
            return (at or 0.0), image
        if at is not None and t < at - EPSILON:
            continue  # behind the schedule: the frame (or missing moment) of a missed slot
        return t, image


# ------------------------------------------------------------------- the command


def play(
    frames: Iterable[AnalysedFrame],
    pipeline: Pipeline,
    stamp: Callable[[float], datetime],
    duration_s: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Played:
    """Run :func:`timeline` over ``frames`` (up to ``duration_s`` of source time after the first),
    counting them; Ctrl-C ends it early with what was seen so far."""
    played = Played([])
    began = monotonic()

    def counted() -> Iterator[AnalysedFrame]:
        for t, image in frames:
            if played.first_t is None:
                played.first_t = t
            if duration_s is not None and t - played.first_t >= duration_s - EPSILON:
                return
            played.frames += 1
            played.last_t = t
            yield t, image

    try:
        for row in timeline(counted(), pipeline, stamp):
            played.rows.append(row)
    except KeyboardInterrupt:
        played.interrupted = True
    played.elapsed_s = monotonic() - began
    return played


def try_settings(overrides: Mapping[str, SettingValue]) -> AgentSettings:
    """The defaults with the command line's values (already range-checked by their flags)."""
    unknown = sorted(set(overrides) - set(TRY_FIELDS))
    if unknown:
        raise ValueError(f"settings: expected some of {', '.join(TRY_FIELDS)}, got {unknown}")
    return AgentSettings.model_validate(dict(overrides))


@dataclass(frozen=True)
class TryRequest:
    """What ``telework agent try`` was asked; None: the agent's variable (``TELEWORK_AGENT_*``) or default."""

    source: str | None = None
    template: Path | None = None
    overrides: Mapping[str, SettingValue] = field(default_factory=dict)
    csv_path: Path | None = None
    realtime: bool = False  # play a file at its real pace (a webcam always is)
    duration_s: float | None = None
    camera: int | None = None
    resolution: str | None = None
    engine: str | None = None


def run_try(request: TryRequest, announce: Callable[[str], None]) -> Played:
    """Play ``request.source`` through the agent's pipeline; ``announce`` gets the lines saying what
    runs, before it runs. The timeline is also written to ``request.csv_path`` (0600).

    A bad source, template, engine or setting is a :class:`~core.config.ConfigError` naming its
    variable; an unwritable CSV file an :class:`~core.errors.OperatorError`, both before the run."""
    from agent.clock import FrameClock, WallClock
    from agent.config import load_monitor_config
    from agent.face.engine import FaceEngineError
    from agent.run import build_monitor_parts, open_monitor_source, source_of

    config = load_monitor_config(
        agent_source=request.source,
        agent_template=request.template,
        agent_camera=request.camera,
        agent_resolution=request.resolution,
        agent_face_engine=request.engine,
    )
    settings = try_settings(request.overrides)
    chosen = source_of(config)
    if request.csv_path is not None:
        _check_writable(request.csv_path)
    try:
        pipeline, spec = build_monitor_parts(config, chosen, config.agent_template)
    except FaceEngineError as exc:
        raise ConfigError("TELEWORK_AGENT_FACE_ENGINE", str(exc)) from None
    pipeline.settings = settings
    frame_source, _reopen, _properties = open_monitor_source(config, spec, settings.analysis_fps)
    pacer = FramePacer() if request.realtime or spec.realtime else None
    clock = FrameClock() if pacer is None else WallClock()  # the agent's clocks, as with/without --fast
    pace = "in real time" if pacer is not None else "as fast as read"
    announce(f"source {chosen}: {settings.analysis_fps:g} frames/s {pace}; engine {pipeline.engine.name}")
    announce(f"settings: {settings_text(settings, pipeline.threshold())}")
    if pacer is not None and request.duration_s is None:
        announce("running until Ctrl-C (or --duration SECONDS)")
    try:
        frames = analysed(frame_source, 1.0 / settings.analysis_fps, pacer)
        played = play(frames, pipeline, clock.frame, request.duration_s)
    finally:
        frame_source.close()
    if request.csv_path is not None:
        write_private(request.csv_path, csv_text(played.rows))
    return played


def _check_writable(path: Path) -> None:
    """Fail before the run, not after it, when the CSV file cannot be written."""
    if path.is_dir():
        raise OperatorError(f"--csv {path}: expected a file name, got a folder")
    try:
        write_private(path, "")
    except OSError as exc:
        raise OperatorError(f"--csv {path}: cannot write the timeline there: {exc.strerror or exc}") from None
