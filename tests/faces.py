"""Where the real face photos are: ``TELEWORK_TEST_FACES``, else ``../shared/faces`` beside the clone.

Tests that need them skip with one clear reason when they are absent, so a clone alone passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FACES = Path(
    os.environ.get("TELEWORK_TEST_FACES") or Path(__file__).resolve().parents[2] / "shared" / "faces"
)
MISSING = f"real face photos not found at {FACES} (set TELEWORK_TEST_FACES to their folder)"

needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason=MISSING)


def require_faces() -> Path:
    """The photo folder; skips the calling test when it is absent."""
    if not FACES.is_dir():
        pytest.skip(MISSING)
    return FACES
