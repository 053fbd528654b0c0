"""Enrollment: the quality gate's reasons, templates as JSON, loading files, capturing from a source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.capture.scene import Appearance, Scene, SceneSource
from agent.face.dlib_engine import DlibEngine
from agent.face.engine import Box, Face, Image, normalise
from agent.face.enroll import ImageLoadError, capture, enroll, load_images
from agent.face.quality import check, darken
from agent.face.templates import Template, TemplateError, best_match
from tests.faces import FACES, needs_faces


def read(path: Path) -> Image:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def photo_engine() -> DlibEngine:
    return DlibEngine(detect_width=None)


def face(x: int, y: int, size: int) -> Face:
    return Face(Box(x, y, size, size), (), 1.0)


def textured(height: int = 240, width: int = 320, mean: float = 128.0) -> Image:
    rng = np.random.default_rng(7)
    return np.clip(rng.normal(mean, 40.0, size=(height, width, 3)), 0, 255).astype(np.uint8)


# -- the pure gate, on synthetic detections -------------------------------------------------------------


def test_gate_reasons_for_face_counts() -> None:
    """No face, and several faces, give their exact reasons (a dark empty frame says it is dark)."""
    image = textured()
    assert check(image, []).reason == "no face found"
    assert check(image, [face(0, 0, 120), face(150, 0, 120)]).reason == "2 faces found; expected exactly one"
    assert check(image, [face(0, 0, 120)] * 3).faces == 3
    dark = check(np.full((240, 320, 3), 12, np.uint8), [])
    assert dark.reason == "image too dark: mean brightness 12 of 255, need at least 40"


def test_gate_reasons_for_size_darkness_and_blur() -> None:
    """Each limit is checked on the face and named in the reason with the value found and the one needed."""
    image = textured()
    small = check(image, [face(10, 10, 60)])
    assert (
        small.reason == "face too small: 60 px high, need at least 100 px (move closer or use a larger photo)"
    )
    assert small.face_px == 60
    dark = check(textured(mean=20.0), [face(10, 10, 120)])
    assert dark.reason == f"face too dark: mean brightness {dark.brightness:.0f} of 255, need at least 40"
    assert dark.brightness is not None and dark.brightness < 40
    flat = check(np.full((240, 320, 3), 128, np.uint8), [face(10, 10, 120)])
    assert flat.reason == "face too blurred: sharpness 0.0, need at least 40.0"
    ok = check(image, [face(10, 10, 120)])
    assert ok.ok and ok.reason is None and ok.sharpness is not None and ok.sharpness > 40
    assert check(image, [face(10, 10, 120)], min_face_px=130).reason == (
        "face too small: 120 px high, need at least 130 px (move closer or use a larger photo)"
    )


# -- the gate on real photos -----------------------------------------------------------------------------


@needs_faces
def test_gate_on_real_photos(photo_engine: DlibEngine) -> None:
    """Group photo, darkened, blurred and shrunken photos are rejected with their exact reasons."""

    def gate(image: Image) -> str | None:
        return check(image, photo_engine.detect(image)).reason

    obama = read(FACES / "obama" / "1.jpg")
    assert gate(obama) is None
    assert gate(read(FACES / "groups" / "two_people.jpg")) == "2 faces found; expected exactly one"
    assert gate(darken(obama, 0.15)) == "face too dark: mean brightness 22 of 255, need at least 40"
    blurred = np.asarray(cv2.GaussianBlur(obama, (0, 0), 5), dtype=np.uint8)
    reason = gate(blurred)
    assert reason is not None and reason.startswith("face too blurred: sharpness ")
    assert reason.endswith(", need at least 40.0")
    assert float(reason.split()[4].rstrip(",")) < 10
    small = np.asarray(
        cv2.resize(read(FACES / "obama" / "5_small.jpg"), (224, 168), interpolation=cv2.INTER_AREA), np.uint8
    )
    assert (
        gate(small) == "face too small: 87 px high, need at least 100 px (move closer or use a larger photo)"
    )


@needs_faces
def test_enroll_keeps_every_verdict(photo_engine: DlibEngine) -> None:
    """Enrolling good and bad images keeps the good ones' embeddings and each bad one's reason."""
    images = [*load_images([FACES / "biden"]), ("group", read(FACES / "groups" / "two_people.jpg"))]
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    enrollment = enroll(photo_engine, images, now=when)
    assert [r.name for r in enrollment.accepted] == [
        str(FACES / "biden" / "1.jpg"),
        str(FACES / "biden" / "2.jpg"),
    ]
    assert [(r.name, r.reason) for r in enrollment.rejected] == [
        ("group", "2 faces found; expected exactly one")
    ]
    template = enrollment.template
    assert template is not None and template.created_at == when and len(template.embeddings) == 2
    assert (template.engine, template.model_version) == ("dlib", "dlib_face_recognition_resnet_model_v1")


@needs_faces
def test_enroll_with_no_acceptable_image_gives_no_template(photo_engine: DlibEngine) -> None:
    """Only rejected images: the enrollment has no template."""
    enrollment = enroll(photo_engine, [("group", read(FACES / "groups" / "two_people.jpg"))])
    assert enrollment.template is None and len(enrollment.rejected) == 1


# -- templates ---------------------------------------------------------------------------------------------


def make_template() -> Template:
    rng = np.random.default_rng(1)
    vectors = tuple(normalise(rng.normal(size=128)) for _ in range(3))
    return Template(
        "dlib", "dlib_face_recognition_resnet_model_v1", vectors, datetime(2025, 5, 6, tzinfo=UTC)
    )


def test_template_json_round_trip(tmp_path: Path) -> None:
    """A template saved as JSON loads back with the same engine, version, time and embeddings."""
    template = make_template()
    path = template.save(tmp_path / "sub" / "template.json")
    loaded = Template.load(path)
    assert (loaded.engine, loaded.model_version, loaded.created_at) == (
        template.engine,
        template.model_version,
        template.created_at,
    )
    assert len(loaded.embeddings) == 3
    for a, b in zip(loaded.embeddings, template.embeddings, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)
    assert best_match(loaded, template.embeddings[1]) < 1e-6
    assert not (tmp_path / "sub" / "template.json.tmp").exists()


def test_template_errors(tmp_path: Path) -> None:
    """Missing, malformed and foreign-engine templates give clear errors."""
    with pytest.raises(TemplateError, match=r"face template not found: .*missing.json \(enroll first"):
        Template.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "engine": "dlib"}')
    with pytest.raises(TemplateError) as caught:
        Template.load(bad)
    assert str(caught.value) == (
        f"{bad} is not a valid face template: model_version: Field required; "
        "created_at: Field required; embeddings: Field required"
    )
    bad.write_text("{not json")
    with pytest.raises(TemplateError, match=r"bad.json is not a valid face template: document: Invalid JSON"):
        Template.load(bad)
    with pytest.raises(TemplateError, match="a template needs at least one embedding, got none"):
        Template("dlib", "v1", ())

    class Other:
        name, model_version = "insightface", "buffalo_s"

    with pytest.raises(
        TemplateError, match=r"template was made with dlib .* the engine is insightface buffalo_s"
    ):
        make_template().check_engine(Other())  # type: ignore[arg-type]


# -- loading files -----------------------------------------------------------------------------------------


def test_load_images_names_every_bad_file(tmp_path: Path) -> None:
    """A non-image file and a missing file are both listed in one ImageLoadError."""
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError) as caught:
        load_images([fake, tmp_path / "gone.jpg", empty])
    message = str(caught.value)
    assert f"{fake}: not an image OpenCV can read (expected JPEG, PNG, BMP, WebP or TIFF)" in message
    assert f"{tmp_path / 'gone.jpg'}: file not found" in message
    assert f"{empty}: not an image" in message
    with pytest.raises(ImageLoadError, match="no enrollment images given"):
        load_images([])


@needs_faces
def test_load_images_expands_folders() -> None:
    """A folder stands for its image files in name order."""
    names = [name for name, _ in load_images([FACES / "kit_harington"])]
    assert names == [str(FACES / "kit_harington" / f"{i}.jpg") for i in (1, 2, 3)]


# -- capturing from a frame source -------------------------------------------------------------------------


@needs_faces
def test_capture_from_a_source_collects_n_good_frames() -> None:
    """From a scene whose camera is covered for 1 s, capture skips the dark frames and takes 3 good ones
    at least 0.5 s apart."""
    live = DlibEngine()
    scene = Scene(
        fps=4.0,
        appearances=(Appearance(FACES / "obama" / "1.jpg", 0.0, 10.0, height=0.45),),
        covered=((0.0, 1.0),),
    )
    source = SceneSource(scene, DlibEngine(detect_width=None).detect)
    enrollment = capture(live, source, count=3, min_interval_s=0.5)
    assert len(enrollment.accepted) == 3
    assert [r.name for r in enrollment.accepted] == ["frame at 1.00 s", "frame at 1.50 s", "frame at 2.00 s"]
    assert [r.reason for r in enrollment.rejected] == [
        "image too dark: mean brightness 10 of 255, need at least 40"
    ]
    assert enrollment.template is not None and len(enrollment.template.embeddings) == 3


@needs_faces
def test_capture_stops_when_the_source_ends() -> None:
    """A source that ends before enough good frames gives what it got (here none) instead of hanging."""
    scene = Scene(fps=2.0, duration_s=2.0)
    source = SceneSource(scene, DlibEngine(detect_width=None).detect)
    enrollment = capture(DlibEngine(), source, count=2)
    assert enrollment.accepted == [] and enrollment.template is None
    assert [r.reason for r in enrollment.rejected] == ["no face found"]
    assert source.ended
