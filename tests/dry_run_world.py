"""What the dry-run tests share: a composed scene of real faces, its expected timeline, the
user's template, and the scene's frames written as a folder of images."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest

from agent.capture.scene import Appearance, CropCache, Scene, SceneSource
from agent.face.dlib_engine import DlibEngine
from agent.face.enroll import enroll, load_images
from agent.face.templates import Template
from realtime.protocol import AgentSettings
from tests.faces import FACES

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
USER = FACES / "obama" / "3.jpg"
INTRUDER = FACES / "biden" / "1.jpg"
SETTINGS = AgentSettings(away_after_s=4.0)  # present 1 s, peeking 1 s, incident 3 s, camera 2 s
SCENE = Scene(
    fps=2.0,
    duration_s=34.0,
    appearances=(
        Appearance(USER, 0.0, 14.0, cx=0.4, height=0.4),
        Appearance(INTRUDER, 4.0, 8.0, cx=0.8, cy=0.4, height=0.36),  # a big face beside the user
        Appearance(INTRUDER, 20.0, 26.0, cx=0.5, height=0.4),  # a stranger alone
    ),
    covered=((28.0, 31.0),),
    unavailable=((31.0, 34.0),),
)
EXPECTED = [  # (t, from, to, rule) on the scene's clock
    (1.0, None, "present", "present_after_s"),
    (5.0, "present", "peeking", "peeking_after_s"),  # second face from 4.0, peeking_after_s 1
    (9.0, "peeking", "present", "present_after_s"),
    (18.0, "present", "away", "away_after_s"),  # user gone from 14.0, away_after_s 4
    (23.0, "away", "impersonation", "incident_after_s"),  # stranger from 20.0, incident_after_s 3
    (27.0, "impersonation", "away", "present_after_s"),  # nobody from 26.0
    (30.0, "away", "camera_blocked", "camera_after_s"),  # covered from 28.0, camera_after_s 2
    (33.0, "camera_blocked", "camera_unavailable", "camera_after_s"),  # no frame from 31.0
]


def stamp(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


@pytest.fixture(scope="module")
def engine() -> DlibEngine:
    return DlibEngine()


@pytest.fixture(scope="module")
def template(engine: DlibEngine) -> Template:
    enrollment = enroll(engine, load_images([FACES / "obama" / "1.jpg", FACES / "obama" / "2.jpg"]))
    if enrollment.template is None:
        raise RuntimeError(f"enrollment failed: {[r.reason for r in enrollment.rejected]}")
    return enrollment.template


@pytest.fixture(scope="module")
def crops() -> CropCache:
    return CropCache(DlibEngine(detect_width=2000).detect)


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory: pytest.TempPathFactory, template: Template, crops: CropCache) -> Path:
    """The scene's frames as a folder of PNG files (a missing frame: none written), and the template."""
    if not FACES.is_dir():
        pytest.skip(f"real face photos not found at {FACES}")
    folder = tmp_path_factory.mktemp("try")
    (folder / "frames").mkdir()
    scene = Scene(fps=2.0, duration_s=26.0, appearances=SCENE.appearances)
    source = SceneSource(scene, crops=crops)
    while (frame := source.read()) is not None:
        cv2.imwrite(str(folder / "frames" / f"{round(frame.t * 2):04d}.png"), frame.image)
    template.save(folder / "user.json")
    return folder
