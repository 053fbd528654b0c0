"""Frame sources and the scene composer: deterministic frames whose faces the dlib engine really finds."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.capture.scene import Appearance, CropCache, Scene, SceneError, SceneSource, office_background
from agent.capture.sources import FrameSourceError, ImageFolderSource, VideoFileSource, WebcamSource
from agent.face.dlib_engine import DlibEngine
from agent.face.enroll import enroll, load_images, verify
from agent.face.templates import Template
from tests.faces import FACES, needs_faces

OBAMA = FACES / "obama" / "1.jpg"
BIDEN = FACES / "biden" / "2.jpg"


@pytest.fixture(scope="module")
def photo_engine() -> DlibEngine:
    return DlibEngine(detect_width=None)


@pytest.fixture(scope="module")
def live() -> DlibEngine:
    """The agent's engine as it runs (full resolution on the 640x480 frames)."""
    return DlibEngine()


@pytest.fixture(scope="module")
def templates(photo_engine: DlibEngine) -> dict[str, Template]:
    """Templates enrolled from photos other than the ones the scenes paste."""
    out = {}
    for person, photos in {"obama": ["2.jpg", "3.jpg", "4.jpg"], "biden": ["1.jpg"]}.items():
        template = enroll(photo_engine, load_images([FACES / person / p for p in photos])).template
        if template is None:
            raise RuntimeError(f"could not enroll {person}")
        out[person] = template
    return out


def two_people_scene(noise: float = 0.0) -> Scene:
    return Scene(
        fps=2.0,
        noise=noise,
        appearances=(
            Appearance(OBAMA, 0.0, 6.0, cx=0.3, cy=0.45, height=0.4),
            Appearance(BIDEN, 2.0, 4.0, cx=0.75, cy=0.5, height=0.36),
        ),
        covered=((6.0, 7.0),),
        unavailable=((7.0, 8.0),),
        duration_s=9.0,
    )


@needs_faces
def test_composer_is_deterministic(photo_engine: DlibEngine) -> None:
    """Two plays of the same scene (with sensor noise) give identical frames at identical times."""

    def play() -> list[tuple[float, bytes] | None]:
        source = SceneSource(two_people_scene(noise=3.0), photo_engine.detect)
        frames = []
        while not source.ended:
            frame = source.read()
            frames.append(None if frame is None else (frame.t, frame.image.tobytes()))
        return frames

    first, second = play(), play()
    assert first == second
    assert [f[0] if f else None for f in first] == [i / 2 for i in range(14)] + [None, None, 8.0, 8.5, None]
    assert first[0] is not None and first[1] is not None and first[0][1] != first[1][1]  # noise differs


@needs_faces
def test_pasted_face_is_found_where_it_was_put_with_its_identity(
    live: DlibEngine, photo_engine: DlibEngine, templates: dict[str, Template]
) -> None:
    """The face pasted at (0.3, 0.45), 0.4 of the frame high, is detected there and verifies as Obama."""
    source = SceneSource(two_people_scene(), photo_engine.detect)
    image = source.frame_at(1.0)
    assert image is not None and image.shape == (480, 640, 3) and image.dtype == np.uint8
    (face,) = live.detect(image)
    cx, cy = face.box.x + face.box.w / 2, face.box.y + face.box.h / 2
    assert abs(cx - 0.3 * 640) < 0.1 * 192 and abs(cy - 0.45 * 480) < 0.1 * 192
    assert 0.85 * 192 < face.box.h < 1.15 * 192
    obama, biden = verify(live, templates["obama"], image), verify(live, templates["biden"], image)
    assert obama.matched and obama.distance is not None and obama.distance < 0.35
    assert not biden.matched and biden.distance is not None and biden.distance > 0.45


@needs_faces
def test_two_people_give_two_faces_with_their_identities(
    live: DlibEngine, photo_engine: DlibEngine, templates: dict[str, Template]
) -> None:
    """While Biden is also in the scene, two faces are found, the right one matching Biden's template."""
    source = SceneSource(two_people_scene(), photo_engine.detect)
    image = source.frame_at(3.0)
    assert image is not None
    faces = sorted(live.detect(image), key=lambda f: f.box.x)
    assert len(faces) == 2
    biden = verify(live, templates["biden"], image)
    assert biden.matched and biden.box == faces[1].box
    assert verify(live, templates["obama"], image).box == faces[0].box


@needs_faces
def test_covered_and_unavailable_spans(live: DlibEngine, photo_engine: DlibEngine) -> None:
    """Covered frames are dark and uniform with no face; unavailable reads give None; then the scene ends."""
    source = SceneSource(two_people_scene(), photo_engine.detect)
    frames = {}
    while not source.ended:
        t = source.t
        frames[t] = source.read()
    covered = [frames[6.0], frames[6.5]]
    for frame in covered:
        assert frame is not None
        assert frame.image.mean() < 15 and frame.image.std() < 3
        assert live.detect(frame.image) == []
    assert frames[7.0] is None and frames[7.5] is None
    assert frames[8.0] is not None and frames[8.5] is not None
    assert frames[9.0] is None and source.ended and source.read() is None


@needs_faces
def test_scene_errors(photo_engine: DlibEngine, tmp_path: Path) -> None:
    """Bad timelines, unreadable photos and a missing face index are reported clearly."""
    with pytest.raises(SceneError, match=r"expected 0 <= start_s < end_s, got 3.0..1.0"):
        Appearance(OBAMA, 3.0, 1.0)
    with pytest.raises(SceneError, match=r"covered span: expected 0 <= start < end, got 2..2"):
        Scene(covered=((2, 2),))
    missing = SceneSource(Scene(appearances=(Appearance(tmp_path / "gone.jpg", 0, 1),)), photo_engine.detect)
    with pytest.raises(SceneError, match=r"cannot read photo .*gone.jpg"):
        missing.read()
    third = SceneSource(Scene(appearances=(Appearance(OBAMA, 0, 1, face_index=2),)), photo_engine.detect)
    with pytest.raises(SceneError, match=r"1.jpg: face 2 requested, 1 found"):
        third.read()
    with pytest.raises(SceneError, match="needs a face detector"):
        SceneSource(Scene())


def test_background_is_deterministic_and_office_like() -> None:
    """The generated background depends only on its seed, and is neither dark nor uniform."""
    a, b, c = office_background(640, 480, 0), office_background(640, 480, 0), office_background(640, 480, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (480, 640, 3) and 100 < a.mean() < 220 and a.std() > 20


# -- file and camera sources -------------------------------------------------------------------------------


@needs_faces
def test_image_folder_source_plays_images_at_fps() -> None:
    """An image folder gives its images in name order at t = n / fps, then ends."""
    source = ImageFolderSource(FACES / "biden", fps=4.0)
    first, second, third = source.read(), source.read(), source.read()
    assert first is not None and second is not None and third is None
    assert (first.t, second.t) == (0.0, 0.25) and first.image.shape == (2204, 970, 3)
    assert source.ended


def test_image_folder_source_tells_the_time_of_its_next_frame(tmp_path: Path) -> None:
    """``t`` is the time the next read's frame has: 0.0, then 0.5 at 2 frames/s, and 1.0 once ended."""
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), 128, np.uint8))
    source = ImageFolderSource(tmp_path, fps=2.0)
    before = source.t
    first = source.read()
    assert (before, first.t if first is not None else None, source.t) == (0.0, 0.0, 0.5)
    second = source.read()
    assert (second.t if second is not None else None, source.t) == (0.5, 1.0)
    assert (source.read(), source.ended, source.t) == (None, True, 1.0)


@needs_faces
def test_video_file_source_subsamples_to_fps() -> None:
    """The Hamilton clip read at 2 frames/s gives frames 0.5 s apart of stream time, then ends."""
    source = VideoFileSource(FACES / "video" / "short_hamilton_clip.mp4", fps=2.0)
    times = []
    while (frame := source.read()) is not None:
        times.append(frame.t)
        assert frame.image.ndim == 3 and frame.image.dtype == np.uint8
    source.close()
    assert source.ended and len(times) >= 2
    assert times[0] == 0.0
    assert all(abs((b - a) - 0.5) < 1 / source.native_fps for a, b in itertools.pairwise(times))


def test_sources_report_missing_inputs(tmp_path: Path) -> None:
    """Missing files and folders, non-video files, empty folders and absent cameras give clear errors."""
    with pytest.raises(FrameSourceError, match=r"video file not found: .*clip.mp4"):
        VideoFileSource(tmp_path / "clip.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(
        FrameSourceError, match=r"cannot open video file .*junk.mp4: not a video OpenCV can decode"
    ):
        VideoFileSource(junk)
    with pytest.raises(FrameSourceError, match=r"image folder not found: .*nowhere"):
        ImageFolderSource(tmp_path / "nowhere")
    with pytest.raises(FrameSourceError, match=r"no images \(.*\) in folder"):
        ImageFolderSource(tmp_path)
    with pytest.raises(FrameSourceError, match="cannot open camera 63: no such camera, or it is in use"):
        WebcamSource(63)


@needs_faces
def test_appearance_height_is_the_faces_landmark_height(live: DlibEngine) -> None:
    """A face pasted 0.3 of the frame high is found 144 px high (within 3 %), by its landmark height."""
    crops = CropCache(live.detect)
    for photo in (OBAMA, BIDEN, FACES / "rose_leslie" / "1.jpg"):
        image = SceneSource(Scene(appearances=(Appearance(photo, 0, 1, height=0.3),)), crops=crops).frame_at(
            0.0
        )
        assert image is not None
        (face,) = live.detect(image)
        assert abs(face.size / 144 - 1) <= 0.03, (photo, face.size)
