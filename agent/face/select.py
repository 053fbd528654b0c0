"""Choosing the face engine: ``auto`` (default) = insightface when a pack is present, else dlib.

Backends are imported only when chosen, so a dlib-only install never imports
insightface and the other way round.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.face.engine import FaceEngine
from agent.face.models import DEFAULT_PACK, pack_dir, pack_present, resolve_model_dir

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger(__name__)

EngineKind = Literal["auto", "dlib", "insightface"]
Backend = Literal["dlib", "insightface"]
KINDS: tuple[EngineKind, ...] = ("auto", "dlib", "insightface")


def choose_backend(
    kind: EngineKind, pack: str, pack_folder: Path, has_pack: bool, has_insightface: bool = True
) -> tuple[Backend, str]:
    """The backend for ``kind`` and a sentence saying why (pure: what is installed is given)."""
    if kind == "dlib":
        return "dlib", "face engine dlib was requested"
    if kind == "insightface":
        return "insightface", "face engine insightface was requested"
    if kind != "auto":
        raise ValueError(f"face engine: expected one of {', '.join(KINDS)}, got {kind!r}")
    if has_pack and not has_insightface:
        return "dlib", (
            f"auto: insightface pack {pack!r} found in {pack_folder} but insightface/onnxruntime "
            "are not installed, using dlib"
        )
    if has_pack:
        return "insightface", f"auto: insightface pack {pack!r} found in {pack_folder}"
    return "dlib", f"auto: no insightface pack {pack!r} in {pack_folder}, using dlib"


def insightface_installed() -> bool:
    """Whether the optional insightface and onnxruntime packages can be imported (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("insightface", "onnxruntime"))


def load_engine(
    kind: EngineKind = "auto", model_dir: Path | str | None = None, pack: str = DEFAULT_PACK
) -> FaceEngine:
    """Load the face engine ``kind`` ("auto", "dlib" or "insightface"); logs which and why.

    ``model_dir`` None means the default model folder. Raises FaceEngineError when the
    chosen engine's models are missing (the message names the folder and the fix).
    """
    folder = resolve_model_dir(model_dir)
    backend, reason = choose_backend(
        kind, pack, pack_dir(folder, pack), pack_present(folder, pack), insightface_installed()
    )
    log.info("face engine: %s (%s)", backend, reason, extra={"engine": backend, "reason": reason})
    if backend == "insightface":
        from agent.face.insightface_engine import InsightFaceEngine

        return InsightFaceEngine(folder, pack)
    from agent.face.dlib_engine import DlibEngine

    return DlibEngine()


def engine_from_config(config: AgentConfig) -> FaceEngine:
    """The engine the agent's settings ask for (TELEWORK_AGENT_FACE_ENGINE, _MODEL_DIR, _MODEL_PACK)."""
    return load_engine(config.agent_face_engine, config.agent_model_dir, config.agent_model_pack)
