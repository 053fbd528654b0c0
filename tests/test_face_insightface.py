"""The insightface engine on a tiny ONNX pack built here (no download): loading, pre- and
post-processing, anchor decoding, NMS, alignment, embeddings; missing packs; ``models fetch``.

The tiny SCRFD has insightface's 9-output signature (score/bbox/kps for strides 8, 16, 32,
2 anchors per cell) on a dynamic 1x3xHxW input. Its stride-32 score is the mean of the
normalised red channel over each 32x32 cell (clipped at 0), strides 8 and 16 score 0, and
every anchor predicts the same box and keypoints, so decoded outputs are known exactly.
The tiny ArcFace pools the 112x112 crop to 3x8x8 and projects it with a fixed matrix.
"""

from __future__ import annotations

import argparse
import logging
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.face.engine import Face, FaceEngineError
from agent.face.insightface_engine import InsightFaceEngine, cosine_to_distance, load_order
from agent.face.models import (
    LICENSE_NOTICE,
    ModelFetchError,
    fetch_insightface,
    installed_packs,
    missing_pack_message,
    release_url,
)
from telework.cli_base import Parser
from telework.cli_models import add_parsers

PACK = "tiny_pack"
STRIDES = (8, 16, 32)
BOX = (0.0, 0.0, 2.0, 2.0)  # left, top, right, bottom distances from the anchor, in strides
KPS = (0.6, 0.7, 1.4, 0.7, 1.0, 1.1, 0.7, 1.5, 1.3, 1.5)  # 5 (x, y) offsets, in strides
EMBED_DIM = 32
WEIGHTS = np.random.default_rng(7).standard_normal((3 * 8 * 8, EMBED_DIM)).astype(np.float32)


def _const(name: str, values: object, dtype: type = np.float32) -> onnx.NodeProto:
    return helper.make_node(
        "Constant",
        [],
        [name],
        name=f"const_{name}",
        value=numpy_helper.from_array(np.array(values, dtype=dtype)),
    )


def build_detector(path: Path) -> Path:
    """A 9-output SCRFD-shaped ONNX model with known outputs (see the module docstring)."""
    nodes = [
        _const("zero", 0.0),
        _const("c_start", [0], np.int64),
        _const("c_end", [1], np.int64),
        _const("c_axis", [1], np.int64),
        _const("flat", [-1, 1], np.int64),
        _const("box", [BOX]),
        _const("kps", [KPS]),
    ]
    scores, boxes, kpss = [], [], []
    for s in STRIDES:
        nodes += [
            helper.make_node(
                "AveragePool", ["input.1"], [f"pool{s}"], name=f"pool{s}", kernel_shape=[s, s], strides=[s, s]
            ),
            helper.make_node(
                "Slice", [f"pool{s}", "c_start", "c_end", "c_axis"], [f"red{s}"], name=f"red{s}"
            ),
            helper.make_node("Relu", [f"red{s}"], [f"act{s}"], name=f"act{s}")
            if s == 32
            else helper.make_node("Mul", [f"red{s}", "zero"], [f"act{s}"], name=f"act{s}"),
            helper.make_node("Transpose", [f"act{s}"], [f"hw{s}"], name=f"hw{s}", perm=[0, 2, 3, 1]),
            helper.make_node("Concat", [f"hw{s}", f"hw{s}"], [f"anchors{s}"], name=f"anchors{s}", axis=3),
            helper.make_node("Reshape", [f"anchors{s}", "flat"], [f"score_{s}"], name=f"score{s}"),
            helper.make_node("Mul", [f"score_{s}", "zero"], [f"nil{s}"], name=f"nil{s}"),
            helper.make_node("Add", [f"nil{s}", "box"], [f"bbox_{s}"], name=f"bbox{s}"),
            helper.make_node("Add", [f"nil{s}", "kps"], [f"kps_{s}"], name=f"kps{s}"),
        ]
        scores.append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [f"n{s}", 1]))
        boxes.append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [f"n{s}", 4]))
        kpss.append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [f"n{s}", 10]))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])
    graph = helper.make_graph(nodes, "tiny_scrfd", [image], scores + boxes + kpss)
    return _save(graph, path)


def build_recogniser(path: Path) -> Path:
    """An ArcFace-shaped model: 1x3x112x112 -> 1x32 (14x14 average pool, fixed projection)."""
    nodes = [
        helper.make_node(
            "AveragePool", ["data"], ["pooled"], name="pool", kernel_shape=[14, 14], strides=[14, 14]
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["fc1"], name="project"),
    ]
    image = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 112, 112])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", EMBED_DIM])
    graph = helper.make_graph(
        nodes, "tiny_arcface", [image], [out], initializer=[numpy_helper.from_array(WEIGHTS, "weights")]
    )
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_pack(model_dir: Path, pack: str = PACK) -> Path:
    """``<model_dir>/<pack>/`` holding the tiny detector and recogniser."""
    build_detector(model_dir / pack / "det_tiny.onnx")
    build_recogniser(model_dir / pack / "w600k_tiny.onnx")
    return model_dir / pack


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_pack(root)
    return root


@pytest.fixture(scope="module")
def engine(pack_root: Path) -> InsightFaceEngine:
    return InsightFaceEngine(pack_root, PACK, det_size=(320, 320))


def _scene(blocks: list[tuple[int, int, int]], size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A black BGR image with grey 64x64 squares at (x, y) of brightness v."""
    image = np.zeros((*size, 3), np.uint8)
    for x, y, v in blocks:
        image[y : y + 64, x : x + 64] = v
    return image


def _expected_face(
    x: int, y: int, scale: float
) -> tuple[tuple[int, int, int, int], list[tuple[float, float]]]:
    """Box and keypoints the decoder must give for a square whose stride-32 cell starts at (x, y)."""
    ax, ay = x * scale, y * scale  # anchor centre of the cell, in detector pixels
    box = (
        (ax - BOX[0] * 32) / scale,
        (ay - BOX[1] * 32) / scale,
        (ax + BOX[2] * 32) / scale,
        (ay + BOX[3] * 32) / scale,
    )
    kps = [((ax + KPS[i] * 32) / scale, (ay + KPS[i + 1] * 32) / scale) for i in range(0, 10, 2)]
    return (round(box[0]), round(box[1]), round(box[2] - box[0]), round(box[3] - box[1])), kps


def test_detect_decodes_letterboxed_anchors_with_nms(engine: InsightFaceEngine) -> None:
    """640x480 frame: letterbox to 320x240, stride-32 anchors decode to exact boxes, keypoints and scores,
    duplicate anchors are merged by NMS, and the brighter face comes first."""
    faces = engine.detect(_scene([(448, 256, 200), (192, 128, 255)]))
    assert len(faces) == 2
    for face, (x, y, v) in zip(faces, [(192, 128, 255), (448, 256, 200)], strict=True):
        box, kps = _expected_face(x, y, 0.5)
        assert (face.box.x, face.box.y, face.box.w, face.box.h) == box
        assert face.score == pytest.approx((v - 127.5) / 128, abs=1e-5)
        assert np.allclose(face.landmarks, kps, atol=1e-3)
    assert box == (448, 256, 128, 128)  # boxes reach 2 strides right and down of the anchor


def test_detect_scales_back_from_other_sizes(engine: InsightFaceEngine) -> None:
    """A 1280x960 frame is resized by 0.25 before detection; boxes come back in frame pixels, clipped."""
    image = np.zeros((960, 1280, 3), np.uint8)
    image[768:960, 1152:1280] = 255  # covers the last stride-32 cell of the resized frame
    (face,) = engine.detect(image)
    assert (face.box.x, face.box.y, face.box.w, face.box.h) == (1152, 768, 128, 192)  # 256x256, clipped
    assert face.landmarks[0] == pytest.approx((1152 + 0.6 * 128, 768 + 0.7 * 128), abs=1e-3)


def test_detect_below_threshold_or_empty(engine: InsightFaceEngine) -> None:
    """Squares scoring under det_thresh 0.5 (brightness 180 -> 0.41) and black frames give no faces."""
    assert engine.detect(_scene([(192, 128, 180)])) == []
    assert engine.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_detect_rejects_bad_images(engine: InsightFaceEngine) -> None:
    """Non-BGR-uint8 input is a FaceEngineError saying what was expected and what arrived."""
    with pytest.raises(
        FaceEngineError, match=r"expected a BGR uint8 image of shape \(H, W, 3\), got float64"
    ):
        engine.detect(np.zeros((10, 10, 3)))  # type: ignore[arg-type]
    with pytest.raises(FaceEngineError, match=r"got uint8 array of shape \(10, 10\)"):
        engine.detect(np.zeros((10, 10), np.uint8))


def _textured(seed: int) -> np.ndarray:
    image = _scene([(192, 128, 255)])
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image[96:224, 160:288] = cv2.resize(coarse, (128, 128), interpolation=cv2.INTER_NEAREST)
    return image


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")
def test_embed_is_arcface_on_the_aligned_crop(engine: InsightFaceEngine) -> None:
    """embed = the recogniser on insightface's norm_crop at the keypoints, RGB (x-127.5)/127.5, unit norm."""
    from insightface.utils import face_align

    image = _textured(1)
    face = engine.detect(_scene([(192, 128, 255)]))[0]
    vector = engine.embed(image, face)
    crop = face_align.norm_crop(image, landmark=np.array(face.landmarks, np.float32), image_size=112)
    rgb = (crop[:, :, ::-1].astype(np.float32) - 127.5) / 127.5
    pooled = rgb.reshape(8, 14, 8, 14, 3).mean(axis=(1, 3)).transpose(2, 0, 1).reshape(-1)
    expected = pooled @ WEIGHTS
    assert vector.dtype == np.float32 and vector.shape == (EMBED_DIM,)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_embed_is_deterministic_and_follows_the_input(engine: InsightFaceEngine) -> None:
    """Same image twice -> the same vector; another face texture -> a different vector."""
    face = engine.detect(_scene([(192, 128, 255)]))[0]
    first, again = engine.embed(_textured(1), face), engine.embed(_textured(1), face)
    other = engine.embed(_textured(2), face)
    assert np.array_equal(first, again)
    assert float(np.linalg.norm(first - other)) > 0.1


def test_embed_needs_five_keypoints(engine: InsightFaceEngine) -> None:
    """A face without insightface's 5 keypoints (e.g. from another engine) cannot be embedded."""
    face = engine.detect(_scene([(192, 128, 255)]))[0]
    with pytest.raises(FaceEngineError, match=r"5 keypoints of its own detector .*got 2 landmarks"):
        engine.embed(_textured(1), Face(face.box, face.landmarks[:2], face.score))


def test_identity_and_thresholds(engine: InsightFaceEngine) -> None:
    """name/model_version; thresholds are unit distances for cosine 0.20..0.52, stricter per level."""
    assert (engine.name, engine.model_version, engine.embedding_size) == ("insightface", PACK, EMBED_DIM)
    assert [round(engine.threshold(level), 4) for level in (1, 2, 3, 4, 5)] == [
        1.2649,
        1.2,
        1.1314,
        1.0583,
        0.9798,
    ]
    assert cosine_to_distance(1.0) == 0.0
    with pytest.raises(ValueError, match="expected 1 to 5, got 6"):
        engine.threshold(6)


def test_det_size_must_fit_the_strides(pack_root: Path) -> None:
    """The detector input must be a multiple of the largest stride (32) on both sides."""
    with pytest.raises(ValueError, match=r"multiples of 32, got \(300, 320\)"):
        InsightFaceEngine(pack_root, PACK, det_size=(300, 320))


def test_missing_pack_names_folder_and_command(tmp_path: Path) -> None:
    """No pack folder -> FaceEngineError naming the folder and the fetch command."""
    with pytest.raises(FaceEngineError) as err:
        InsightFaceEngine(tmp_path, "buffalo_s")
    assert str(err.value) == (
        f"insightface pack 'buffalo_s' not found: no .onnx files in {tmp_path / 'buffalo_s'}; "
        "run `telework models fetch insightface --pack buffalo_s` (or copy the pack's .onnx files there)"
    )
    assert str(err.value) == missing_pack_message(tmp_path, "buffalo_s")


def test_incomplete_or_corrupt_pack(tmp_path: Path) -> None:
    """A pack without a recogniser, or with an unreadable file, is an error naming what is wrong."""
    build_detector(tmp_path / "halfpack" / "det_tiny.onnx")
    with pytest.raises(
        FaceEngineError, match=r"expected a detection \(SCRFD\) and a recognition .*found no recognition"
    ):
        InsightFaceEngine(tmp_path, "halfpack")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "det.onnx").write_bytes(b"not onnx")
    with pytest.raises(FaceEngineError, match=f"cannot load model {tmp_path / 'broken' / 'det.onnx'}"):
        InsightFaceEngine(tmp_path, "broken")


def test_load_order_prefers_detector_and_recogniser() -> None:
    """buffalo pack files: det/w600k first, landmark and attribute models last."""
    names = ["1k3d68.onnx", "2d106det.onnx", "det_500m.onnx", "genderage.onnx", "w600k_mbf.onnx"]
    assert [p.name for p in load_order([Path(n) for n in names])] == [
        "det_500m.onnx",
        "w600k_mbf.onnx",
        "1k3d68.onnx",
        "2d106det.onnx",
        "genderage.onnx",
    ]


# ----------------------------------------------------------------------------- fetch


def _zip_pack(tmp_path: Path, pack_root: Path) -> Path:
    """A zip laid out like antelopev2.zip (files nested in a folder), plus a non-model file."""
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((pack_root / PACK).glob("*.onnx")):
            zf.write(f, f"nested/{f.name}")
        zf.writestr("nested/README.txt", "hello")
    return archive


def test_fetch_from_url_unpacks_and_loads(tmp_path: Path, pack_root: Path) -> None:
    """fetch from a file:// URL: only the .onnx files land in <dir>/<pack>, the engine loads them,
    progress is reported, and a present pack is not fetched again."""
    seen: list[tuple[int, int | None]] = []
    models = tmp_path / "models"
    folder = fetch_insightface(
        "fetched", models, lambda d, t: seen.append((d, t)), url=_zip_pack(tmp_path, pack_root).as_uri()
    )
    assert folder == models / "fetched"
    assert sorted(p.name for p in folder.iterdir()) == ["det_tiny.onnx", "w600k_tiny.onnx"]
    assert installed_packs(models) == ["fetched"]
    assert seen and seen[-1][0] == seen[-1][1] == (tmp_path / "pack.zip").stat().st_size
    assert InsightFaceEngine(models, "fetched").detect(_scene([(192, 128, 255)]))[0].box.w == 128
    assert fetch_insightface("fetched", models, url="http://127.0.0.1:9/never.zip") == folder


def test_fetch_bad_archive_leaves_nothing(tmp_path: Path) -> None:
    """A download that is not a zip -> ModelFetchError with the reason and the folder; no partial pack."""
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"html error page")
    models = tmp_path / "models"
    with pytest.raises(ModelFetchError) as err:
        fetch_insightface("buffalo_s", models, url=bogus.as_uri())
    assert str(err.value).startswith(f"could not download buffalo_s from {bogus.as_uri()}: not a zip archive")
    assert str(err.value).endswith(f"; copy the pack's .onnx files into {models / 'buffalo_s'}")
    assert list(models.iterdir()) == []


def _run(argv: list[str]) -> int:
    root = Parser(prog="telework")
    add_parsers(root.add_subparsers(dest="command", required=True, parser_class=Parser), Parser)
    args = root.parse_args(argv)
    code: int = args.func(args)
    return code


def test_models_fetch_command_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`telework models fetch insightface --pack buffalo_s` with no route out: exit 2, the license notice,
    then one clear line naming the URL, the reason and the folder to copy the files into."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # nothing listens: a deterministic failure
    monkeypatch.setenv("TELEWORK_AGENT_MODEL_DIR", str(tmp_path))
    code = _run(["models", "fetch", "insightface", "--pack", "buffalo_s"])
    out, err = capsys.readouterr()
    url = "https://github.com/deepinsight/insightface/releases/download/model-zoo/buffalo_s.zip"
    assert code == 2
    assert out.startswith(LICENSE_NOTICE + "\n") and "non-commercial research purposes only" in out
    assert err.startswith(f"telework models: error: could not download buffalo_s from {url}: ")
    assert err.endswith(f"; copy the pack's .onnx files into {tmp_path / 'buffalo_s'}\n")
    assert err.count("\n") == 1
    assert release_url("buffalo_s") == url


def test_release_url_matches_installed_insightface() -> None:
    """Our download URL is the one insightface itself uses for its model zoo."""
    from insightface.utils import storage

    assert release_url("buffalo_l") == storage.model_zoo_download_url("buffalo_l.zip")


def test_models_fetch_rejects_bad_pack_names(capsys: pytest.CaptureFixture[str]) -> None:
    """A pack name with a path in it is refused before any download."""
    assert _run(["models", "fetch", "insightface", "--pack", "../etc"]) == 2
    assert (
        capsys.readouterr().err
        == "telework models: error: model pack: expected a name like 'buffalo_s', got '../etc'\n"
    )


def test_models_list(
    pack_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`telework models list` shows the folder, its packs and what auto picks."""
    monkeypatch.setenv("TELEWORK_AGENT_MODEL_PACK", PACK)
    assert _run(["models", "list", "--model-dir", str(pack_root)]) == 0
    assert capsys.readouterr().out == (
        f"model folder: {pack_root}\ninsightface packs: {PACK}\n"
        f"face engine: insightface (auto: insightface pack {PACK!r} found in {pack_root / PACK})\n"
    )


def test_fetch_logs_progress(tmp_path: Path, pack_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The download logs its progress and the result (long work logs progress)."""
    caplog.set_level(logging.INFO, logger="agent.face.models")
    fetch_insightface("logged", tmp_path / "m", url=_zip_pack(tmp_path, pack_root).as_uri())
    messages = [r.getMessage() for r in caplog.records]
    assert "downloading model pack" in messages and messages[-1] == "model pack fetched"


def test_parsers_register_models_commands() -> None:
    """add_parsers adds `models fetch` and `models list` with their flags."""
    root = argparse.ArgumentParser()
    add_parsers(root.add_subparsers(dest="command"), argparse.ArgumentParser)
    args = root.parse_args(["models", "fetch", "insightface", "--pack", "buffalo_l", "--force"])
    assert (args.command, args.models_command, args.pack, args.force, args.url) == (
        "models",
        "fetch",
        "buffalo_l",
        True,
        None,
    )
