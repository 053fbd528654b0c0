"""Where the agent keeps face-model packs, and fetching insightface's packs.

A pack is a folder ``<model dir>/<pack>/`` of ``.onnx`` files, laid out as
insightface ships them (``buffalo_s/det_500m.onnx``, ``buffalo_s/w600k_mbf.onnx``, ...).
The model dir is the agent setting ``TELEWORK_AGENT_MODEL_DIR``; unset, it is
``<user data dir>/models`` (platformdirs).

License: insightface's code is MIT, but its pretrained model packs (buffalo_l,
buffalo_m, buffalo_s, buffalo_sc, antelopev2, ...) are licensed for
non-commercial research purposes only. ``telework models fetch`` prints
:data:`LICENSE_NOTICE` before it downloads anything. For commercial use, use the
``dlib`` engine (its weights are commercially usable) or a licensed pack.
"""

from __future__ import annotations

import logging
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import platformdirs

from core.errors import OperatorError

log = logging.getLogger(__name__)

APP_NAME = "telework-supporter"  # same folder as the server's data dir (core.settings)
DEFAULT_PACK = "buffalo_s"
PACK_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# insightface's own download location (insightface.utils.storage.model_zoo_download_url)
RELEASE_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo/{pack}.zip"
DOWNLOAD_TIMEOUT_S = 30.0
CHUNK = 1 << 20

LICENSE_NOTICE = (
    "Note: insightface's pretrained model packs (buffalo_l, buffalo_m, buffalo_s, buffalo_sc, "
    "antelopev2) are licensed for non-commercial research purposes only "
    "(https://github.com/deepinsight/insightface#license). Commercial use needs a license from "
    "insightface; the dlib engine's models are commercially usable."
)

Progress = Callable[[int, int | None], None]  # (bytes done, total bytes or None if unknown)


class ModelFetchError(OperatorError, RuntimeError):
    """A model pack could not be downloaded or unpacked."""


def default_model_dir() -> Path:
    """``<user data dir>/models``, the model folder when TELEWORK_AGENT_MODEL_DIR is unset."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"


def resolve_model_dir(configured: Path | str | None) -> Path:
    """The model folder: the configured one (``~`` expanded) or the default."""
    if configured is None or str(configured).strip() == "":
        return default_model_dir()
    return Path(configured).expanduser()


def check_pack(pack: str) -> str:
    """``pack`` if it is a plain folder name (no path separators), else ValueError."""
    if not re.match(PACK_PATTERN, pack) or pack in (".", ".."):
        raise ValueError(f"model pack: expected a name like {DEFAULT_PACK!r}, got {pack!r}")
    return pack


def pack_dir(model_dir: Path, pack: str) -> Path:
    return Path(model_dir).expanduser() / check_pack(pack)


def pack_files(model_dir: Path, pack: str) -> list[Path]:
    """The pack's ``.onnx`` files, sorted; empty when the pack is not there."""
    folder = pack_dir(model_dir, pack)
    return sorted(p for p in folder.glob("*.onnx") if p.is_file()) if folder.is_dir() else []


def pack_present(model_dir: Path, pack: str) -> bool:
    return bool(pack_files(model_dir, pack))


def installed_packs(model_dir: Path) -> list[str]:
    """Names of the packs in ``model_dir`` that hold at least one ``.onnx`` file."""
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and re.match(PACK_PATTERN, p.name) and any(p.glob("*.onnx"))
    )


def fetch_command(pack: str) -> str:
    return f"telework models fetch insightface --pack {pack}"


def missing_pack_message(model_dir: Path, pack: str) -> str:
    """The error text when a pack's models are not in the model folder."""
    return (
        f"insightface pack {pack!r} not found: no .onnx files in {pack_dir(model_dir, pack)}; "
        f"run `{fetch_command(pack)}` (or copy the pack's .onnx files there)"
    )


def release_url(pack: str) -> str:
    return RELEASE_URL.format(pack=check_pack(pack))


def fetch_insightface(
    pack: str,
    model_dir: Path,
    progress: Progress | None = None,
    *,
    url: str | None = None,
    force: bool = False,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download insightface pack ``pack`` into ``<model_dir>/<pack>/``; returns that folder.

    Fetches ``url`` (default: insightface's release zip, :func:`release_url`), keeps the
    zip's ``.onnx`` files (flattened: some packs nest them in a folder) and moves them
    into place only when complete, so a failed fetch leaves no half pack. An existing
    pack is kept unless ``force``. Raises :class:`ModelFetchError` saying what to do.
    The packs are licensed for non-commercial research only (:data:`LICENSE_NOTICE`).
    """
    target = pack_dir(model_dir, pack)
    if pack_present(model_dir, pack) and not force:
        log.info("model pack already present", extra={"pack": pack, "folder": str(target)})
        return target
    source = url or release_url(pack)
    root = Path(model_dir).expanduser()
    staging = root / f".{pack}.partial"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        archive = staging / f"{pack}.zip"
        _download(source, archive, progress, timeout_s)
        names = _extract_onnx(archive, staging)
        archive.unlink()
    except (OSError, urllib.error.URLError, zipfile.BadZipFile, ValueError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelFetchError(
            f"could not download {pack} from {source}: {_reason(exc)}; "
            f"copy the pack's .onnx files into {target}"
        ) from exc
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    log.info("model pack fetched", extra={"pack": pack, "folder": str(target), "files": names})
    return target


def _download(source: str, archive: Path, progress: Progress | None, timeout_s: float) -> None:
    with urllib.request.urlopen(source, timeout=timeout_s) as response, archive.open("wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done, logged = 0, -1
        while chunk := response.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            step = done * 10 // total if total else done // (10 * CHUNK)
            if step != logged:
                logged = step
                log.info("downloading model pack", extra={"url": source, "bytes": done, "total": total})


def _extract_onnx(archive: Path, folder: Path) -> list[str]:
    """Write the zip's ``.onnx`` members into ``folder`` by base name; ValueError if there are none."""
    names: list[str] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename).name
            if info.is_dir() or not name.endswith(".onnx") or name.startswith("."):
                continue
            with zf.open(info) as src, (folder / name).open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            names.append(name)
    if not names:
        raise ValueError("the archive holds no .onnx files")
    return sorted(names)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a zip archive ({exc})"
    return str(exc) or type(exc).__name__
