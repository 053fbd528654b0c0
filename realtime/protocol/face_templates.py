"""The ``template`` frame: a user's face template, built on the server, pushed to their agents. Pure.

The server is the one source of a user's template: it builds it from the user's registered
images and sends it to every open session of the user's agents (after a registration or a
deletion, and in the welcome of each session). An agent keeps the body made by its own engine and model
version; no body for its engine (``templates`` empty: the user has no images) means it has no
template. Embeddings travel as base64 of little-endian float32 (compact and exact).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from realtime.protocol.base import WireModel

MAX_TEMPLATE_EMBEDDINGS = 50  # images of one user (the server's face_images_per_user at most)
MAX_EMBEDDING_DIM = 1024  # dlib's are 128 values, ArcFace's 512
MAX_TEMPLATE_BODIES = 4  # engines and model versions a user's images were embedded with
B64_PATTERN = r"^[A-Za-z0-9+/]+={0,2}$"
EmbeddingText = Annotated[
    str, Field(min_length=4, max_length=(MAX_EMBEDDING_DIM * 4 + 2) // 3 * 4, pattern=B64_PATTERN)
]


class TemplateBody(WireModel):
    """A user's embeddings made by one engine and model version."""

    engine: str = Field(min_length=1, max_length=32)
    model_version: str = Field(min_length=1, max_length=64)
    embeddings: list[EmbeddingText] = Field(min_length=1, max_length=MAX_TEMPLATE_EMBEDDINGS)


class TemplatePush(WireModel):
    """The current face template of the session's user (``revision``: the sha256 of its content)."""

    type: Literal["template"] = "template"
    user_id: int = Field(ge=1, le=2**31 - 1)
    revision: str = Field(pattern=r"^[0-9a-f]{64}$")
    templates: list[TemplateBody] = Field(max_length=MAX_TEMPLATE_BODIES)


def encode_embedding(values: Sequence[float]) -> str:
    """Pure: base64 of ``values`` as little-endian float32; ValueError for a value not finite."""
    if not 1 <= len(values) <= MAX_EMBEDDING_DIM:
        raise ValueError(f"embedding: expected 1 to {MAX_EMBEDDING_DIM} values, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("embedding: expected finite values")
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def decode_embedding(text: str) -> list[float]:
    """Pure: :func:`encode_embedding` reversed; ValueError saying what is wrong."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("embedding: expected base64 text") from None
    if not raw or len(raw) % 4 or len(raw) > MAX_EMBEDDING_DIM * 4:
        raise ValueError(f"embedding: expected 1 to {MAX_EMBEDDING_DIM} float32 values, got {len(raw)} bytes")
    values = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if not all(math.isfinite(v) for v in values):
        raise ValueError("embedding: expected finite values")
    return values
