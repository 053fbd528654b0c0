"""The dlib face engine on the real photos of ../shared/faces: face counts, embeddings, identities."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.capture.scene import Appearance, CropCache, Scene, SceneSource
from agent.detect.detection import detect_at_width
from agent.face.dlib_engine import THRESHOLDS, DlibEngine, DlibModels, landmark_height
from agent.face.engine import FaceEngineError, Image, distance
from agent.face.enroll import assess, enroll, load_images, verify
from agent.face.templates import best_match
from tests.faces import FACES, needs_faces

pytestmark = needs_faces

PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "lin_manuel_miranda", "obama", "rose_leslie"]
# How many of each person's photos (in name order) build the template; the rest are probes.
ENROLL_FROM = {"alex_lacamoire": 2, "biden": 1, "kit_harington": 2, "obama": 3, "rose_leslie": 1}


def photos_of(person: str) -> list[Path]:
    return sorted(p for p in (FACES / person).iterdir() if p.suffix in (".jpg", ".png"))


def read(path: Path) -> Image:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def photo_engine() -> DlibEngine:
    """Detection at the photos' own resolution (the default; the pipeline sizes live frames itself)."""
    return DlibEngine(detect_width=None)


@pytest.fixture(scope="module")
def embeddings(photo_engine: DlibEngine) -> dict[Path, np.ndarray]:
    """The embedding of the one face of every single-person photo."""
    out = {}
    for person in PEOPLE:
        for path in photos_of(person):
            faces = photo_engine.detect(read(path))
            out[path] = photo_engine.embed(read(path), faces[0])
    return out


def test_every_single_person_photo_has_exactly_one_face(photo_engine: DlibEngine) -> None:
    """Each of the 18 folder photos yields exactly one face, with 5 landmarks inside its image."""
    counts = {}
    for person in PEOPLE:
        for path in photos_of(person):
            image = read(path)
            faces = photo_engine.detect(image)
            counts[f"{person}/{path.name}"] = len(faces)
            for x, y in faces[0].landmarks:
                assert 0 <= x < image.shape[1] and 0 <= y < image.shape[0]
            assert len(faces[0].landmarks) == 5
    assert len(counts) == 18
    assert set(counts.values()) == {1}, counts


@pytest.mark.parametrize(
    ("name", "expected"),
    [("two_people.jpg", 2), ("kit_harington_with_rose_leslie.jpg", 2), ("obama_and_biden.jpg", 3)],
)
def test_group_photos_yield_the_right_face_count(photo_engine: DlibEngine, name: str, expected: int) -> None:
    """At full resolution the HOG detector finds every face of the group photos, the background one too."""
    assert len(photo_engine.detect(read(FACES / "groups" / name))) == expected


def test_reduced_detection_size_misses_only_the_small_background_face() -> None:
    """Detecting at 640 px wide finds the two main faces of obama_and_biden.jpg (the third is too small)."""
    faces = DlibEngine(detect_width=640).detect(read(FACES / "groups" / "obama_and_biden.jpg"))
    assert len(faces) == 2
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_embeddings_are_unit_vectors_of_128(embeddings: dict[Path, np.ndarray]) -> None:
    """Every embedding is a float32 128-vector of length 1."""
    for vector in embeddings.values():
        assert vector.shape == (128,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_calibration_same_and_different_people_are_separated_by_level_3(
    embeddings: dict[Path, np.ndarray],
) -> None:
    """All same-person distances are below the level-3 threshold and all different-person ones above,
    each with a margin of at least 0.03."""
    same: list[float] = []
    different: list[float] = []
    for a, b in itertools.combinations(embeddings, 2):
        (same if a.parent == b.parent else different).append(distance(embeddings[a], embeddings[b]))
    assert len(same) == 3 + 1 + 3 + 21 + 1 and len(different) == 153 - 29
    assert max(same) < THRESHOLDS[3] - 0.03
    assert min(different) > THRESHOLDS[3] + 0.03
    assert [THRESHOLDS[level] for level in (1, 2, 3, 4, 5)] == sorted(THRESHOLDS.values(), reverse=True)


def test_enrolled_identities_accept_their_other_photos_and_reject_everyone_else(
    photo_engine: DlibEngine, embeddings: dict[Path, np.ndarray]
) -> None:
    """Enroll each person from some photos: their other photos all match at level 3, nobody else's does."""
    threshold = photo_engine.threshold(3)
    for person, n in ENROLL_FROM.items():
        photos = photos_of(person)
        enrollment = enroll(photo_engine, load_images(photos[:n]))
        assert len(enrollment.accepted) == n and enrollment.rejected == []
        template = enrollment.template
        assert template is not None and len(template.embeddings) == n
        for path, vector in embeddings.items():
            if path in photos[:n]:
                continue
            matched = best_match(template, vector) <= threshold
            assert matched == (path.parent.name == person), (person, path, best_match(template, vector))


def test_verify_reports_match_distance_threshold_and_box(photo_engine: DlibEngine) -> None:
    """verify() on a probe photo of the enrolled person matches; on another person it does not."""
    template = enroll(photo_engine, load_images(photos_of("obama")[:3])).template
    assert template is not None
    same = verify(photo_engine, template, read(FACES / "obama" / "4.jpg"), level=3)
    other = verify(photo_engine, template, read(FACES / "biden" / "1.jpg"), level=3)
    assert same.matched and same.distance is not None and same.distance < 0.37
    assert same.threshold == 0.40 and same.faces == 1 and same.box is not None and same.box.h > 100
    assert not other.matched and other.distance is not None and other.distance > 0.43


def test_verify_in_a_group_photo_picks_the_matching_face(photo_engine: DlibEngine) -> None:
    """In obama_and_biden.jpg, a Biden template matches one of the 3 faces."""
    template = enroll(photo_engine, load_images(photos_of("biden"))).template
    assert template is not None
    result = verify(photo_engine, template, read(FACES / "groups" / "obama_and_biden.jpg"))
    assert result.matched and result.faces == 3


def test_live_detection_at_320_px_finds_a_webcam_sized_face() -> None:
    """Scanning a 640x480 frame at 320 px wide finds its big face and maps the box and landmarks back."""
    engine = DlibEngine()
    photo = read(FACES / "obama" / "4.jpg")
    (face,) = engine.detect(photo)
    cx, cy, side = face.box.x + face.box.w // 2, face.box.y + face.box.h // 2, face.box.h * 2
    region = photo[max(0, cy - side * 3 // 8) : cy + side * 3 // 8, max(0, cx - side // 2) : cx + side // 2]
    frame = np.asarray(cv2.resize(region, (640, 480), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    (a,), (b,) = detect_at_width(engine, frame, 320), engine.detect(frame)
    assert a.box.iou(b.box) > 0.6
    assert a.height is not None and b.height is not None and abs(a.height / b.height - 1) < 0.05
    assert all(
        abs(p - q) < 6
        for pa, pb in zip(a.landmarks, b.landmarks, strict=True)
        for p, q in zip(pa, pb, strict=True)
    )
    assert 0.9 < engine.embed(frame, a) @ engine.embed(frame, b) <= 1.0 + 1e-6


def test_the_default_engine_counts_every_face_at_full_resolution() -> None:
    """DlibEngine(), as enrollment and punches use it, finds the small background face of obama_and_biden."""
    assert len(DlibEngine().detect(read(FACES / "groups" / "obama_and_biden.jpg"))) == 3


def test_landmark_height_is_continuous_where_boxes_step() -> None:
    """A face pasted at 100-250 px: HOG box heights jump in steps of about 1.2x, the landmark height stays
    within 5 % of the pasted size at every size and scan width."""
    engine = DlibEngine()
    crops = CropCache(engine.detect)
    box_ratios, size_ratios = set(), []
    for px in (100, 130, 160, 190, 220, 250):
        scene = Scene(appearances=(Appearance(FACES / "kit_harington" / "1.jpg", 0, 1, height=px / 480),))
        image = SceneSource(scene, crops=crops).frame_at(0.0)
        assert image is not None
        for width in (480, 640, 800):
            (face,) = detect_at_width(engine, image, width)
            box_ratios.add(round(face.box.h / px, 2))
            size_ratios.append(face.size / px)
    assert max(box_ratios) / min(box_ratios) > 1.15
    assert all(abs(r - 1) <= 0.05 for r in size_ratios), size_ratios
    assert landmark_height(()) is None


def test_thresholds_and_bad_input_errors() -> None:
    """Levels outside 1..5, non-BGR images and missing model files give clear errors."""
    engine = DlibEngine()
    assert engine.name == "dlib" and engine.model_version == "dlib_face_recognition_resnet_model_v1"
    assert [engine.threshold(level) for level in (1, 2, 3, 4, 5)] == [0.45, 0.425, 0.40, 0.375, 0.35]
    with pytest.raises(ValueError, match="threshold level: expected 1 to 5, got 0"):
        engine.threshold(0)
    with pytest.raises(
        FaceEngineError, match=r"expected a BGR uint8 image of shape \(H, W, 3\), got uint8 array"
    ):
        engine.detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(
        FaceEngineError, match=r"expected a BGR uint8 image of shape \(H, W, 3\), got float64"
    ):
        detect_at_width(engine, np.zeros((10, 10, 3)), 320)  # type: ignore[arg-type]  # the wrong type, on purpose
    missing = Path("/nonexistent/shape_predictor_5_face_landmarks.dat")
    with pytest.raises(
        FaceEngineError, match=r"dlib model file missing: .*pip install face_recognition_models"
    ):
        DlibEngine(models=DlibModels(missing, missing))


def test_assess_of_a_group_photo_is_rejected_with_its_face_count(photo_engine: DlibEngine) -> None:
    """assess() keeps the gate's reason and no embedding for a rejected image."""
    result = assess(photo_engine, "two_people", read(FACES / "groups" / "two_people.jpg"))
    assert not result.accepted and result.embedding is None
    assert result.reason == "2 faces, need exactly 1"
