"""The face upload's pure parts: the header check refuses before decoding, with one reason each;
stored embeddings round-trip; upload paths get their own body limit; thumbnails are small JPEGs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.settings import ServerSettings
from storage.face_images import FaceImageError, decode_embedding, encode_embedding
from tests.test_web_faces import png_header
from web.face_parts import FORM_OVERHEAD, upload_limit
from web.faces import Limits, decode, header_problem, thumbnail, to_jpeg

LIMITS = Limits(max_bytes=1_000_000, max_side=8192, per_user=20)


MAGICS = (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0", b"MM\0*")


@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_header_check_answers_any_bytes_with_none_or_a_reason(magic: bytes, rest: bytes) -> None:
    """Whatever arrives (image signatures with anything after them too), the check returns None or
    one of its reasons; it never raises."""
    found = header_problem(magic + rest, LIMITS)
    assert found is None or found.startswith(
        ("not an image", "empty file", "image too large", "file too large")
    )


def test_header_reasons() -> None:
    """Too many bytes, no image header, too many pixels a side: each its exact reason."""
    assert header_problem(b"x" * 1_000_001, LIMITS) == "file too large: 1000001 bytes, need at most 1000000"
    assert header_problem(b"", LIMITS) == "empty file: expected a JPEG, PNG, WebP or BMP image"
    assert header_problem(b"GIF8 but not", LIMITS) == "not an image: expected a JPEG, PNG, WebP or BMP image"
    assert header_problem(png_header(20_000, 30), LIMITS) == (
        "image too large: 20000x30 px, need at most 8192 px a side"
    )
    assert header_problem(png_header(800, 600), LIMITS) is None  # the header is fine; decoding comes next
    assert (
        decode(png_header(800, 600))
        == "not an image OpenCV can read: expected a JPEG, PNG, WebP or BMP image"
    )


def test_thumbnail_is_a_small_jpeg_of_the_image() -> None:
    """A 900x600 image gives a JPEG 160 px wide (aspect kept)."""
    image = np.full((600, 900, 3), 128, dtype=np.uint8)
    small = decode(thumbnail(to_jpeg(image)))
    assert not isinstance(small, str) and small.shape == (107, 160, 3)
    with pytest.raises(FaceImageError):
        thumbnail(b"not a jpeg")


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=512))
def test_stored_embeddings_round_trip(values: list[float]) -> None:
    """An embedding's bytes decode to the same float32 values."""
    vector = np.array(values, dtype=np.float32)
    assert np.array_equal(decode_embedding(encode_embedding(vector)), vector)


def test_bad_embedding_bytes_are_refused() -> None:
    """Bytes that are not whole float32 values are refused with the length found."""
    with pytest.raises(FaceImageError, match="expected a multiple of 4 bytes, got 7"):
        decode_embedding(b"1234567")


def test_only_face_uploads_get_the_larger_body_limit() -> None:
    """POST to a user's faces (page or API) may carry the upload limit; nothing else may."""
    settings = ServerSettings(face_upload_max_bytes=2_000_000)
    wide = 2_000_000 + FORM_OVERHEAD
    assert upload_limit("POST", "/api/v1/users/12/faces", settings) == wide
    assert upload_limit("POST", "/users/12/faces", settings) == wide
    for method, path in (
        ("GET", "/users/12/faces"),
        ("POST", "/users/12/faces/3/delete"),
        ("POST", "/api/v1/users/12"),
        ("POST", "/users/x/faces"),
    ):
        assert upload_limit(method, path, settings) is None  # fmt: skip
    assert (
        cv2.imdecode(np.frombuffer(to_jpeg(np.zeros((4, 4, 3), np.uint8)), np.uint8), cv2.IMREAD_COLOR)
        is not None
    )
