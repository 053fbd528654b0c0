"""`telework agent try`'s logic: the pipeline's timeline on real faces, its rows formatted, sources read."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from agent.capture.scene import CropCache, Scene, SceneSource
from agent.capture.sources import Frame
from agent.detect.pipeline import Pipeline
from agent.dry_run import analysed, play, timeline, try_settings
from agent.dry_run_text import COLUMNS, Played, Row, cells, csv_text, durations, settings_text, summary
from agent.face.dlib_engine import DlibEngine
from agent.face.templates import Template, best_match
from agent.pacing import FramePacer
from tests.dry_run_world import EXPECTED, SCENE, SETTINGS, crops, engine, stamp, template
from tests.faces import FACES, needs_faces
from tests.stepped_clock import SteppedClock

__all__ = ["crops", "engine", "template"]  # fixtures


@pytest.fixture(scope="module")
def scene_rows(engine: DlibEngine, template: Template, crops: CropCache) -> list[Row]:
    if not FACES.is_dir():
        pytest.skip(f"real face photos not found at {FACES}")
    pipeline = Pipeline(engine, lambda e: best_match(template, e), SETTINGS)
    return list(timeline(analysed(SceneSource(SCENE, crops=crops), 0.5), pipeline, stamp))


# ------------------------------------------------------------------ timeline on real faces


@needs_faces
def test_scene_timeline_has_every_transition_at_its_time(scene_rows: list[Row]) -> None:
    """A composed scene with real faces: present, peeking, present, away, impersonation,
    camera_blocked, camera_unavailable, each at its time with its rule, stamped by the given clock."""
    assert [(r.t, r.previous, r.state, r.trace["rule"]) for r in scene_rows] == EXPECTED
    assert [r.at for r in scene_rows] == [stamp(t) for t, *_ in EXPECTED]


@needs_faces
def test_rows_carry_the_agents_decision_trace(scene_rows: list[Row], engine: DlibEngine) -> None:
    """The peeking row shows both faces' roles, distances against the threshold and sizes, as the
    agent sends them; its table cells say so; the unavailable row says why."""
    peeking = scene_rows[1]
    faces = peeking.observation["faces"]
    assert [f["role"] for f in faces] == ["user", "other"]
    assert faces[0]["distance"] <= peeking.observation["threshold"] == round(engine.threshold(3), 4)
    assert faces[1]["distance"] > peeking.observation["threshold"]
    text = cells(peeking)
    assert text[:6] == ("09:00:05.000", "5.0", "present -> peeking", "peeking_after_s", "1/1", "3/2")
    user, other = text[6].split(", ")
    assert user == f"user {faces[0]['distance']:.3f} {faces[0]['height_px']}px"
    assert other == f"other {faces[1]['distance']:.3f} {faces[1]['height_px']}px x{faces[1]['rel_size']:.2f}"
    blocked = cells(scene_rows[6])
    assert blocked[6] == "no face" and blocked[7].endswith(" dark uniform")
    assert cells(scene_rows[7])[6:] == ("no frame: no frame from the camera", "-")


# ----------------------------------------------------------------------- formatting (pure)


def _row(t: float, previous: str | None, state: str, faces: list[dict[str, object]] | None = None) -> Row:
    observation: dict[str, object] = {
        "t": t,
        "label": state,
        "threshold": 0.4,
        "faces": faces or [],
        "luma_mean": 120.4,
    }
    observation |= {"luma_std": 40.6, "dark": False, "uniform": False}
    trace: dict[str, object] = {
        "from": previous,
        "to": state,
        "label": state,
        "rule": "present_after_s",
        "held_s": 1.0,
    }
    trace |= {"required_s": 1.0, "since": t - 1, "frames": 3, "min_frames": 2, "observation": observation}
    return Row(stamp(t), t, previous, state, trace)


ROWS = [
    _row(
        1.0,
        None,
        "present",
        [{"track": 1, "distance": 0.31, "height_px": 180, "rel_size": 1.0, "role": "user"}],
    ),
    _row(31.0, "present", "away"),
    _row(40.0, "away", "present"),
]


def test_cells_of_a_row() -> None:
    """A row's cells: clock time, source time, change, rule, held/needed, frames/min, faces, brightness."""
    assert len(COLUMNS) == 8
    assert cells(ROWS[0]) == (
        "09:00:01.000",
        "1.0",
        "- -> present",
        "present_after_s",
        "1/1",
        "3/2",
        "user 0.310 180px",
        "120 sd 41",
    )


def test_csv_has_the_numbers_in_columns_and_the_whole_trace() -> None:
    """The CSV reads back to one record per row, with the trace's numbers and the full trace as JSON."""
    records = list(csv.DictReader(io.StringIO(csv_text(ROWS))))
    assert [(r["at"], r["t_s"], r["from"], r["to"]) for r in records] == [
        ("2026-12-01T09:00:01.000+00:00", "1.0", "", "present"),
        ("2026-12-01T09:00:31.000+00:00", "31.0", "present", "away"),
        ("2026-12-01T09:00:40.000+00:00", "40.0", "away", "present"),
    ]
    first = records[0]
    assert (first["user_distance"], first["faces"], first["held_s"], first["threshold"]) == (
        "0.31",
        "user 0.310 180px",
        "1.0",
        "0.4",
    )
    assert [json.loads(r["trace"]) for r in records] == [r.trace for r in ROWS]


def test_durations_and_summary() -> None:
    """Time in each state runs from its transition to the next; the last to the last frame."""
    assert durations(ROWS, 50.0) == {"present": 40.0, "away": 9.0}
    played = Played(ROWS, frames=100, first_t=0.0, last_t=50.0, elapsed_s=5.0)
    assert summary(played) == (
        "100 frames (0-50 s of source time) analysed in 5.0 s, 50 ms/frame; 3 state changes; "
        "time in states: present 40 s, away 9 s"
    )
    assert summary(Played([])) == "no frame analysed"
    assert durations([], 9.0) == {}
    assert summary(Played([], frames=3, first_t=0.0, last_t=1.0, elapsed_s=0.3, interrupted=True)) == (
        "3 frames (0-1 s of source time) analysed in 0.3 s, 100 ms/frame; 0 state changes; stopped by Ctrl-C"
    )


def test_settings_of_the_command_line() -> None:
    """Flags change only the detection settings; the header says each value and the threshold distance."""
    settings = try_settings({"threshold_level": 5, "away_after_s": 4.0})
    assert (settings.threshold_level, settings.away_after_s, settings.analysis_fps) == (5, 4.0, 2.0)
    assert settings_text(settings, 0.35) == (
        "threshold_level 5 (distance 0.35), analysis_fps 2, away_after_s 4, incident_after_s 3, "
        "peeking_after_s 1, camera_after_s 2, other_face_min_ratio 0.5"
    )
    with pytest.raises(
        ValueError, match=r"settings: expected some of threshold_level, .*got \['heartbeat_interval_s'\]"
    ):
        try_settings({"heartbeat_interval_s": 9.0})


# ------------------------------------------------------------------ reading sources


class FilesCamera:
    """A webcam played from files (the hardware edge): no stream time, never ends."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images
        self.ended = False
        self.t = None
        self.reads = 0

    def read(self) -> Frame | None:
        self.reads += 1
        return Frame(123.0 + self.reads, self.images[(self.reads - 1) % len(self.images)])

    def close(self) -> None:
        self.ended = True


def _blank_scene(seconds: float, unavailable: tuple[tuple[float, float], ...] = ()) -> SceneSource:
    scene = Scene(fps=2.0, duration_s=seconds, unavailable=unavailable)
    return SceneSource(scene, crops=CropCache(lambda image: []))


def test_fast_reading_gives_every_frame_with_its_stream_time() -> None:
    """As fast as read: every frame of a 5 s scene at 2 fps, a missing one timed where it was due."""
    got = [(t, image is None) for t, image in analysed(_blank_scene(5.0, ((2.0, 3.0),)), 0.5)]
    assert got == [(n / 2, 2.0 <= n / 2 < 3.0) for n in range(10)]


def test_real_time_reading_skips_the_frames_of_missed_slots() -> None:
    """In real time with an injected clock: frame 1's work takes 1.3 s, so the frame of slot 2 is
    skipped and the file goes on at the frame of now (1.5 s), then every 0.5 s on the grid."""
    clock = SteppedClock(50.0)
    pacer = FramePacer(clock)
    work = {0.5: 1.3}
    seen = []
    for t, _image in analysed(_blank_scene(3.0), 0.5, pacer, clock.sleep):
        seen.append((t, round(clock.now - 50.0, 9)))
        clock.now += work.get(t, 0.1)
    assert seen == [(0.0, 0.0), (0.5, 0.5), (1.5, 1.8), (2.0, 2.0), (2.5, 2.5)]


def test_a_webcam_is_timed_by_its_slots() -> None:
    """A webcam (no stream time): one read per slot, timed by the slot's seconds since the first."""
    camera = FilesCamera([np.zeros((48, 64, 3), np.uint8)])
    clock = SteppedClock(50.0)
    frames = analysed(camera, 0.5, FramePacer(clock), clock.sleep)
    times = [next(frames)[0] for _ in range(4)]
    assert (times, camera.reads) == ([0.0, 0.5, 1.0, 1.5], 4)


def test_play_stops_at_the_duration() -> None:
    """--duration 2: frames of the first 2 s of source time only, counted."""
    played = play(analysed(_blank_scene(10.0), 0.5), _no_face_pipeline(), stamp, duration_s=2.0)
    assert (played.frames, played.first_t, played.last_t) == (4, 0.0, 1.5)
    assert [(r.t, r.state) for r in played.rows] == [(1.0, "away")]


def _no_face_pipeline() -> Pipeline:
    class NoFaces(DlibEngine):
        def detect(self, image: np.ndarray) -> list:  # type: ignore[type-arg]
            return []

    return Pipeline(NoFaces(), lambda e: 1.0)
