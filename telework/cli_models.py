"""``telework models``: list and fetch face-model packs (wired into telework.cli by add_parsers)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import ConfigError
from core.errors import USAGE_ERROR

if TYPE_CHECKING:
    from agent.config import AgentConfig


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from agent.face.models import LICENSE_NOTICE, ModelFetchError, fetch_insightface, release_url

    try:
        model_dir, pack = _folder_and_pack(args)
        source = args.url or release_url(pack)
    except (ConfigError, ValueError) as exc:
        return _error(exc)
    print(LICENSE_NOTICE, flush=True)
    print(f"fetching insightface pack {pack} from {source} into {model_dir / pack}", flush=True)
    try:
        folder = fetch_insightface(pack, model_dir, _Progress(), url=args.url, force=args.force)
    except ModelFetchError as exc:
        return _error(exc)
    files = ", ".join(p.name for p in sorted(folder.glob("*.onnx")))
    print(f"insightface pack {pack} ready in {folder}: {files}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from agent.face.models import installed_packs
    from agent.face.select import choose_backend, insightface_installed

    try:
        model_dir, pack = _folder_and_pack(args)
        engine = _config(args).agent_face_engine
    except (ConfigError, ValueError) as exc:
        return _error(exc)
    packs = installed_packs(model_dir)
    print(f"model folder: {model_dir}")
    print(f"insightface packs: {', '.join(packs) if packs else '(none)'}")
    backend, reason = choose_backend(engine, pack, model_dir / pack, pack in packs, insightface_installed())
    print(f"face engine: {backend} ({reason})")
    return 0


class _Progress:
    """Prints download progress to stderr every 10% (or every 10 MB when the size is unknown)."""

    def __init__(self) -> None:
        self.shown = -1

    def __call__(self, done: int, total: int | None) -> None:
        step = done * 10 // total if total else done // (10 << 20)
        if step != self.shown:
            self.shown = step
            size = f"{done >> 20} / {total >> 20} MB" if total else f"{done >> 20} MB"
            print(f"  {size}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> AgentConfig:
    from agent.config import load_agent_config

    return load_agent_config(agent_model_dir=args.model_dir, agent_model_pack=getattr(args, "pack", None))


def _folder_and_pack(args: argparse.Namespace) -> tuple[Path, str]:
    from agent.face.models import check_pack, resolve_model_dir

    pack = getattr(args, "pack", None)
    if pack is not None:
        check_pack(pack)
    config = _config(args)
    return resolve_model_dir(config.agent_model_dir), check_pack(config.agent_model_pack)


def _error(exc: BaseException) -> int:
    print(f"telework models: error: {exc}", file=sys.stderr)
    return USAGE_ERROR


def add_parsers(sub: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``telework models fetch`` and ``telework models list`` on ``sub``."""
    models = sub.add_parser(
        "models",
        help="face-model packs (insightface)",
        description="List and fetch the face-model packs of the insightface engine.",
    )
    ms = models.add_subparsers(
        dest="models_command", required=True, metavar="COMMAND", parser_class=parser_class
    )

    p = ms.add_parser(
        "fetch",
        help="download a model pack (insightface packs: non-commercial research use only)",
        description=(
            "Download an insightface model pack into the model folder. insightface's pretrained packs "
            "are licensed for non-commercial research purposes only."
        ),
    )
    p.add_argument("engine", choices=["insightface"], help="engine whose models to fetch")
    p.add_argument("--pack", help="pack name, e.g. buffalo_s or buffalo_l (env TELEWORK_AGENT_MODEL_PACK)")
    _model_dir(p)
    p.add_argument(
        "--url", help="download from this URL (a mirror, or file://) instead of insightface's release"
    )
    p.add_argument("--force", action="store_true", help="download again even if the pack is present")
    p.set_defaults(func=cmd_models_fetch)

    p = ms.add_parser(
        "list",
        help="show the model folder, its packs and the engine auto picks",
        description="Show the model folder, the insightface packs in it and which face engine is used.",
    )
    _model_dir(p)
    p.set_defaults(func=cmd_models_list)


def _model_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        type=Path,
        help="model folder (env TELEWORK_AGENT_MODEL_DIR; default: <user data dir>/models)",
    )
