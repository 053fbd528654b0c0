"""Face-engine selection: auto = insightface when a pack is present, else dlib; settings; model folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.config import load_agent_config
from agent.face.engine import FaceEngineError
from agent.face.models import default_model_dir, missing_pack_message, resolve_model_dir
from agent.face.select import choose_backend, engine_from_config, load_engine
from core.config import ConfigError
from tests.test_face_insightface import PACK, build_pack

FOLDER = Path("/m/buffalo_s")


@pytest.mark.parametrize(
    ("kind", "has_pack", "installed", "backend", "reason"),
    [
        ("auto", True, True, "insightface", "auto: insightface pack 'buffalo_s' found in /m/buffalo_s"),
        ("auto", False, True, "dlib", "auto: no insightface pack 'buffalo_s' in /m/buffalo_s, using dlib"),
        (
            "auto",
            True,
            False,
            "dlib",
            "auto: insightface pack 'buffalo_s' found in /m/buffalo_s but insightface/onnxruntime "
            "are not installed, using dlib",
        ),
        ("dlib", True, True, "dlib", "face engine dlib was requested"),
        ("insightface", False, False, "insightface", "face engine insightface was requested"),
    ],
)
def test_choose_backend(kind: str, has_pack: bool, installed: bool, backend: str, reason: str) -> None:
    """The pure choice: explicit kinds win; auto follows the pack and the packages, with a readable reason."""
    assert choose_backend(kind, "buffalo_s", FOLDER, has_pack, installed) == (backend, reason)  # type: ignore[arg-type]


def test_choose_backend_rejects_unknown_kind() -> None:
    """An unknown engine kind is refused, naming the choices."""
    with pytest.raises(ValueError, match="expected one of auto, dlib, insightface, got 'opencv'"):
        choose_backend("opencv", "buffalo_s", FOLDER, False)  # type: ignore[arg-type]


def test_auto_without_pack_is_dlib(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """auto with an empty model folder loads dlib and logs why."""
    caplog.set_level(logging.INFO, logger="agent.face.select")
    engine = load_engine("auto", tmp_path, "buffalo_s")
    assert (engine.name, type(engine).__name__) == ("dlib", "DlibEngine")
    (record,) = [r for r in caplog.records if r.name == "agent.face.select"]
    assert record.getMessage() == (
        f"face engine: dlib (auto: no insightface pack 'buffalo_s' in {tmp_path / 'buffalo_s'}, using dlib)"
    )


def test_auto_with_pack_is_insightface(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """auto with a pack in the model folder loads insightface from it and logs why."""
    build_pack(tmp_path)
    caplog.set_level(logging.INFO, logger="agent.face.select")
    engine = load_engine("auto", tmp_path, PACK)
    assert (engine.name, engine.model_version, type(engine).__name__) == (
        "insightface",
        PACK,
        "InsightFaceEngine",
    )
    assert f"face engine: insightface (auto: insightface pack '{PACK}' found in {tmp_path / PACK})" in [
        r.getMessage() for r in caplog.records
    ]


def test_explicit_kinds(tmp_path: Path) -> None:
    """dlib is used even when a pack is present; insightface without a pack is the missing-pack error."""
    build_pack(tmp_path)
    assert load_engine("dlib", tmp_path, PACK).name == "dlib"
    with pytest.raises(FaceEngineError) as err:
        load_engine("insightface", tmp_path, "buffalo_s")
    assert str(err.value) == missing_pack_message(tmp_path, "buffalo_s")


def test_settings_select_the_engine(tmp_path: Path) -> None:
    """TELEWORK_AGENT_FACE_ENGINE, _MODEL_DIR, _MODEL_PACK drive engine_from_config (auto, buffalo_s)."""
    build_pack(tmp_path)
    defaults = load_agent_config({})
    assert (defaults.agent_face_engine, defaults.agent_model_dir, defaults.agent_model_pack) == (
        "auto",
        None,
        "buffalo_s",
    )
    env = {"TELEWORK_AGENT_MODEL_DIR": str(tmp_path), "TELEWORK_AGENT_MODEL_PACK": PACK}
    assert engine_from_config(load_agent_config(env)).name == "insightface"
    env["TELEWORK_AGENT_FACE_ENGINE"] = "dlib"
    assert engine_from_config(load_agent_config(env)).name == "dlib"


@pytest.mark.parametrize(
    ("key", "value"),
    [("TELEWORK_AGENT_FACE_ENGINE", "opencv"), ("TELEWORK_AGENT_MODEL_PACK", "../x")],
)
def test_bad_settings_name_the_variable(key: str, value: str) -> None:
    """A bad engine kind or pack name stops start-up with a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=f"^{key}: .*got '{value}'"):
        load_agent_config({key: value})


def test_model_folder_resolution(tmp_path: Path) -> None:
    """Unset -> <user data dir>/models; set -> that folder, with ~ expanded."""
    assert resolve_model_dir(None) == default_model_dir()
    assert default_model_dir().parts[-2:] == ("telework-supporter", "models")
    assert resolve_model_dir(str(tmp_path)) == tmp_path
    assert resolve_model_dir("~/models") == Path.home() / "models"
