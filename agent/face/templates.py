"""A user's face template on the agent: the embeddings of the accepted enrollment images.

Saved as JSON (format version 1). The engine name and model version are part of
the template: embeddings of different models are not comparable, so matching a
template against another engine is an error, not a silent mismatch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from agent.face.engine import Embedding, FaceEngine, FaceEngineError, distance, normalise

FORMAT_VERSION = 1
MAX_EMBEDDINGS = 1000  # a template file is parsed before anything else: bounded
MAX_DIM = 4096
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FILE_MODE = 0o600
FOLDER_MODE = 0o700


class TemplateError(ValueError):
    """A template file is missing, malformed, or made by another engine."""


class _TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = Field(ge=FORMAT_VERSION, le=FORMAT_VERSION)
    engine: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    created_at: AwareDatetime
    embeddings: list[Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_DIM)]] = Field(
        min_length=1, max_length=MAX_EMBEDDINGS
    )


@dataclass(frozen=True)
class Template:
    """Embeddings (unit vectors) of one user for one engine and model version."""

    engine: str
    model_version: str
    embeddings: tuple[Embedding, ...]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not self.embeddings:
            raise TemplateError("a template needs at least one embedding, got none")
        sizes = {e.shape for e in self.embeddings}
        if len(sizes) != 1:
            raise TemplateError(f"template embeddings must all have the same size, got {sorted(sizes)}")

    def to_json(self) -> str:
        return _TemplateFile(
            format=FORMAT_VERSION,
            engine=self.engine,
            model_version=self.model_version,
            created_at=self.created_at,
            embeddings=[[float(x) for x in e] for e in self.embeddings],
        ).model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "template") -> Template:
        """Parse ``to_json`` output; TemplateError says what is wrong and where (``source``)."""
        try:
            data = _TemplateFile.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
                for error in exc.errors()
            )
            raise TemplateError(f"{source} is not a valid face template: {problems}") from exc
        try:
            embeddings = tuple(normalise(e) for e in data.embeddings)
        except FaceEngineError as exc:
            raise TemplateError(f"{source}: {exc}") from exc
        return cls(data.engine, data.model_version, embeddings, data.created_at)

    def save(self, path: Path | str) -> Path:
        """Write the template atomically (temporary file, fsync, rename), readable by its owner only:
        the file 0600, folders it creates 0700 (a face template is personal data)."""
        target = Path(path)
        _make_private_folder(target.parent)
        temporary = target.with_name(target.name + ".tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.to_json())
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        temporary.replace(target)
        return target

    @classmethod
    def load(cls, path: Path | str) -> Template:
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise TemplateError(
                f"face template not found: {source} (enroll first: telework agent enroll)"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read face template {source}: {exc}") from exc
        return cls.from_json(text, source=str(source))

    def check_engine(self, engine: FaceEngine) -> None:
        """TemplateError unless ``engine`` made (can be compared with) this template."""
        if (engine.name, engine.model_version) != (self.engine, self.model_version):
            raise TemplateError(
                f"template was made with {self.engine} {self.model_version}, the engine is "
                f"{engine.name} {engine.model_version}: enroll again with this engine"
            )


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents 0700; an existing folder is left as it is."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        created.mkdir(mode=FOLDER_MODE, exist_ok=True)
        created.chmod(FOLDER_MODE)  # mkdir's mode is reduced by the umask


def best_match(template: Template, embedding: Embedding) -> float:
    """The smallest distance between ``embedding`` and the template's embeddings."""
    stack = np.stack(template.embeddings)
    if stack.shape[1] != embedding.shape[-1]:
        raise TemplateError(
            f"embedding has {embedding.shape[-1]} values, the template's have {stack.shape[1]}"
        )
    if len(template.embeddings) == 1:
        return distance(template.embeddings[0], embedding)
    return float(np.linalg.norm(stack - embedding.astype(np.float32), axis=1).min())
