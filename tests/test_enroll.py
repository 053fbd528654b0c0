"""Enrollment: the quality gate's reasons, one person per template, private template files, loading
files, capturing from a source."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.capture.scene import Appearance, Scene, SceneSource
from agent.face.dlib_engine import DlibEngine
from agent.face.engine import Box, Face, Image, distance, normalise
from agent.face.enroll import ImageLoadError, assess, capture, enroll, load_images
from agent.face.quality import brightness, check, darken
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
    """No face, and several faces, give their exact reasons (a dark frame without a face: no face found)."""
    image = textured()
    assert check(image, []).reason == "no face found"
    assert check(image, [face(0, 0, 120), face(150, 0, 120)]).reason == "2 faces, need exactly 1"
    assert check(image, [face(0, 0, 120)] * 3).faces == 3
    dark = check(np.full((240, 320, 3), 12, np.uint8), [])
    assert dark.reason == "no face found"  # the photo's brightness is no reason: nothing was measured


def test_gate_reasons_for_size_darkness_and_blur() -> None:
    """Each limit is checked on the face and named in the reason with the value found and the one needed."""
    image = textured()
    small = check(image, [face(10, 10, 60)])
    assert small.reason == "face too small: 60 px, need 100"
    assert small.face_px == 60
    dark = check(textured(mean=20.0), [face(10, 10, 120)])
    assert dark.reason == f"too dark: face region mean {int(dark.brightness or 0)}, need 40"
    assert dark.brightness is not None and dark.brightness < 40
    flat = check(np.full((240, 320, 3), 128, np.uint8), [face(10, 10, 120)])
    assert flat.reason == "too blurred: face region sharpness 0.0, need 40.0"
    ok = check(image, [face(10, 10, 120)])
    assert ok.ok and ok.reason is None and ok.sharpness is not None and ok.sharpness > 40
    assert check(image, [face(10, 10, 120)], min_face_px=130).reason == "face too small: 120 px, need 130"


# -- the gate on real photos -----------------------------------------------------------------------------


@needs_faces
def test_gate_on_real_photos(photo_engine: DlibEngine) -> None:
    """Group photo, darkened, blurred and shrunken photos are rejected with their exact reasons."""

    def gate(image: Image) -> str | None:
        return check(image, photo_engine.detect(image)).reason

    obama = read(FACES / "obama" / "1.jpg")
    assert gate(obama) is None
    assert gate(read(FACES / "groups" / "two_people.jpg")) == "2 faces, need exactly 1"
    assert gate(read(FACES / "groups" / "obama_and_biden.jpg")) == "3 faces, need exactly 1"  # one far behind
    assert gate(darken(obama, 0.15)) == "too dark: face region mean 21, need 40"  # 21.9 rounded down
    blurred = np.asarray(cv2.GaussianBlur(obama, (0, 0), 5), dtype=np.uint8)
    reason = gate(blurred)
    assert reason is not None and reason.startswith("too blurred: face region sharpness ")
    assert reason.endswith(", need 40.0")
    assert float(reason.split()[5].rstrip(",")) < 10
    small = np.asarray(
        cv2.resize(read(FACES / "obama" / "5_small.jpg"), (224, 168), interpolation=cv2.INTER_AREA), np.uint8
    )
    assert gate(small) == "face too small: 87 px, need 100"


@needs_faces
def test_a_webcam_sized_photo_with_a_104_px_face_is_enrolled() -> None:
    """A 640x480 photo with a 104 px face passes the gate at full resolution; at 320 px it had no face."""
    engine = DlibEngine()
    scene = Scene(appearances=(Appearance(FACES / "kit_harington" / "2.jpg", 0, 1, height=104 / 480),))
    image = SceneSource(scene, engine.detect).frame_at(0.0)
    assert image is not None
    result = assess(engine, "webcam", image)
    assert result.accepted and result.quality.face_px is not None and result.quality.face_px >= 100
    assert assess(DlibEngine(detect_width=320), "webcam", image).reason == "no face found"


@needs_faces
def test_brightness_is_the_face_regions_not_the_photos(photo_engine: DlibEngine) -> None:
    """A bright face in a dark photo passes; a dark face in a bright photo fails with the face's mean."""
    obama = read(FACES / "obama" / "1.jpg")
    (found,) = photo_engine.detect(obama)
    b = found.box
    dark_room = darken(obama, 0.2)
    dark_room[b.y : b.y + b.h, b.x : b.x + b.w] = obama[b.y : b.y + b.h, b.x : b.x + b.w]
    assert check(dark_room, photo_engine.detect(dark_room)).ok
    assert brightness(dark_room) < 40  # the whole photo is darker than the limit
    shaded = obama.copy()
    shaded[b.y : b.y + b.h, b.x : b.x + b.w] = darken(obama[b.y : b.y + b.h, b.x : b.x + b.w], 0.25)
    faces = photo_engine.detect(shaded)
    assert len(faces) == 1
    result = check(shaded, faces)
    assert result.brightness is not None and brightness(shaded) > 40
    assert result.reason == f"too dark: face region mean {int(result.brightness)}, need 40"


@needs_faces
def test_images_of_another_person_are_rejected_with_their_distance(photo_engine: DlibEngine) -> None:
    """Biden's two photos and one of Obama: Obama's is rejected with its largest distance to Biden's."""
    images = [*load_images([FACES / "biden"]), *load_images([FACES / "obama" / "1.jpg"])]
    enrollment = enroll(photo_engine, images)
    assert [r.name for r in enrollment.accepted] == [str(FACES / "biden" / f"{i}.jpg") for i in (1, 2)]
    (outlier,) = enrollment.rejected
    biden = [r.embedding for r in enrollment.accepted if r.embedding is not None]
    assert outlier.embedding is not None
    far = max(distance(outlier.embedding, e) for e in biden)
    assert far > 0.6
    assert outlier.reason == f"not the same person as the other images: distance {far:.2f}, need at most 0.45"
    assert enrollment.template is not None and len(enrollment.template.embeddings) == 2


@needs_faces
def test_a_template_of_two_people_is_refused(photo_engine: DlibEngine) -> None:
    """One photo each of two people: the first stays; with two photos of the other, those two stay."""
    kit, rose = FACES / "kit_harington" / "1.jpg", FACES / "rose_leslie"
    one_each = enroll(photo_engine, load_images([kit, rose / "1.jpg"]))
    assert [r.name for r in one_each.accepted] == [str(kit)]
    assert [(r.reason or "")[:52] for r in one_each.rejected] == [
        "not the same person as the other images: distance 0."
    ]
    majority = enroll(photo_engine, load_images([kit, rose]))
    assert [r.name for r in majority.accepted] == [str(rose / "1.jpg"), str(rose / "2.jpg")]
    assert [r.name for r in majority.rejected] == [str(kit)]


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
    assert [(r.name, r.reason) for r in enrollment.rejected] == [("group", "2 faces, need exactly 1")]
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
    huge = tmp_path / "huge.png"
    cv2.imwrite(str(huge), np.zeros((8, 8193, 3), np.uint8))
    with pytest.raises(ImageLoadError) as caught:
        load_images([huge])
    assert str(caught.value).endswith(f"{huge}: image too large: 8193x8 px, need at most 8192 a side")


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
    assert [r.reason for r in enrollment.rejected] == ["no face found"]
    assert enrollment.template is not None and len(enrollment.template.embeddings) == 3


@needs_faces
def test_capture_refuses_frames_of_another_person() -> None:
    """Obama for 1.2 s, then Biden: the frames of Biden are refused by distance, Obama's three kept."""
    scene = Scene(
        fps=4.0,
        duration_s=4.0,
        appearances=(
            Appearance(FACES / "obama" / "1.jpg", 0.0, 1.2, height=0.45),
            Appearance(FACES / "biden" / "1.jpg", 1.2, 4.0, height=0.45),
        ),
    )
    source = SceneSource(scene, DlibEngine().detect)
    enrollment = capture(DlibEngine(), source, count=5, min_interval_s=0.5)
    assert [r.name for r in enrollment.accepted] == ["frame at 0.00 s", "frame at 0.50 s", "frame at 1.00 s"]
    (refused,) = enrollment.rejected
    assert refused.name == "frame at 1.50 s"
    assert (refused.reason or "").startswith("not the same person as the other images: distance 0.")
    assert enrollment.template is not None and len(enrollment.template.embeddings) == 3


def test_template_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """A saved template is 0600 and the folders save creates are 0700, even under umask 000."""
    old = os.umask(0)
    try:
        path = make_template().save(tmp_path / "a" / "b" / "template.json")
        path2 = make_template().save(tmp_path / "template.json")  # existing folder: left as it is
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path2.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert Template.load(path).embeddings[0].shape == (128,)


def test_template_values_are_bounded() -> None:
    """NaN or infinite values, and more than 1,000 embeddings, are refused when a template is read."""
    base = '{"format": 1, "engine": "dlib", "model_version": "v", "created_at": "2025-01-01T00:00:00Z", '
    with pytest.raises(TemplateError, match=r"embeddings.0.0: Input should be a finite number"):
        Template.from_json(base + '"embeddings": [[NaN, 1.0]]}')
    with pytest.raises(TemplateError, match=r"embeddings: List should have at most 1000 items"):
        Template.from_json(base + '"embeddings": [' + ",".join(["[1.0]"] * 1001) + "]}")


@needs_faces
def test_capture_stops_when_the_source_ends() -> None:
    """A source that ends before enough good frames gives what it got (here none) instead of hanging."""
    scene = Scene(fps=2.0, duration_s=2.0)
    source = SceneSource(scene, DlibEngine(detect_width=None).detect)
    enrollment = capture(DlibEngine(), source, count=2)
    assert enrollment.accepted == [] and enrollment.template is None
    assert [r.reason for r in enrollment.rejected] == ["no face found"]
    assert source.ended
