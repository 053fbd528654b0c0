"""What one analysed frame shows (pure): the user, other faces that can read the screen, a covered camera.

:func:`classify` turns the visible face tracks (each with its distance to the user's
template) and the frame's luminance statistics into an :class:`Observation` with a
``label``: the state this frame alone argues for. The state machine decides, over
time, whether the label becomes the state.

* ``present``: the closest face within ``threshold`` of the template is the user;
* ``peeking``: the user plus another face at least ``other_face_min_ratio`` of the
  user's face height (a face much smaller than the user's is far away: ignored); face
  heights are the tracks' ``size`` (from landmarks when the engine estimates it);
* ``impersonation``: no user, and a face at least ``stranger_min_face_frac`` of the
  frame height (someone sitting in front of the PC, not a passer-by far behind);
* ``camera_blocked``: no face, and the frame is dark (mean luminance below
  ``dark_luma``) or uniform (standard deviation below ``uniform_std``);
* ``camera_unavailable``: no frame at all;
* ``away``: none of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from agent.detect.tracker import Track
from agent.face.engine import Image
from realtime.protocol import PresenceState

Role = Literal["user", "other", "stranger", "ignored"]


@dataclass(frozen=True)
class ClassifyParams:
    threshold: float  # largest template distance that is the user (engine.threshold(level))
    other_face_min_ratio: float = 0.5  # other face height / user face height to count as peeking
    stranger_min_face_frac: float = 0.15  # face height / frame height to count without the user
    dark_luma: float = 35.0  # mean luminance (0-255) below this: dark
    uniform_std: float = 8.0  # luminance standard deviation below this: uniform


@dataclass(frozen=True)
class FrameStats:
    luma_mean: float
    luma_std: float


@dataclass(frozen=True)
class FaceNote:
    """One visible face as the classification saw it."""

    track: int
    distance: float | None
    height_px: int
    rel_size: float  # height / the user's face height, or / the frame height without the user
    role: Role


@dataclass(frozen=True)
class Observation:
    t: float
    label: PresenceState  # the state this frame alone argues for
    threshold: float
    faces: tuple[FaceNote, ...] = ()
    stats: FrameStats | None = None  # None: no frame (camera unavailable)
    dark: bool = False
    uniform: bool = False
    reason: str | None = None  # why the camera is unavailable

    @property
    def user_distance(self) -> float | None:
        return next((f.distance for f in self.faces if f.role == "user"), None)

    def trace(self) -> dict[str, Any]:
        """The numbers behind the label, as JSON-ready values."""
        out: dict[str, Any] = {"t": round(self.t, 3), "label": self.label}
        out["threshold"] = round(self.threshold, 4)
        out["faces"] = [
            {
                "track": f.track,
                "distance": None if f.distance is None else round(f.distance, 4),
                "height_px": f.height_px,
                "rel_size": round(f.rel_size, 3),
                "role": f.role,
            }
            for f in self.faces
        ]
        if self.stats is not None:
            out["luma_mean"] = round(self.stats.luma_mean, 1)
            out["luma_std"] = round(self.stats.luma_std, 1)
            out["dark"] = self.dark
            out["uniform"] = self.uniform
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def frame_stats(image: Image) -> FrameStats:
    """Mean and standard deviation of the luminance, on a 160-pixel-wide copy."""
    height, width = image.shape[:2]
    small: np.ndarray = image
    if width > 160:
        small = cv2.resize(image, (160, max(1, round(height * 160 / width))), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return FrameStats(float(np.mean(gray)), float(np.std(gray)))


def unavailable(t: float, threshold: float, reason: str) -> Observation:
    """The observation of a moment without a frame."""
    return Observation(t=t, label="camera_unavailable", threshold=threshold, reason=reason)


def user_track(tracks: Sequence[Track], threshold: float) -> Track | None:
    """The closest track within ``threshold`` of the template (the user), or None."""
    matching = [tr for tr in tracks if tr.distance is not None and tr.distance <= threshold]
    return min(matching, key=lambda tr: (tr.distance, tr.id)) if matching else None


def classify(
    t: float, tracks: Sequence[Track], frame_height: int, stats: FrameStats, params: ClassifyParams
) -> Observation:
    """The label of one frame from its visible ``tracks`` (with distances) and luminance ``stats``."""
    if frame_height <= 0:
        raise ValueError(f"frame_height: expected a positive number of pixels, got {frame_height}")
    user = user_track(tracks, params.threshold)
    notes: list[FaceNote] = []
    for tr in sorted(tracks, key=lambda tr: tr.id):
        if user is not None:
            rel = tr.size / max(1.0, user.size)
            role: Role = (
                "user" if tr.id == user.id else "other" if rel >= params.other_face_min_ratio else "ignored"
            )
        else:
            rel = tr.size / frame_height
            role = "stranger" if rel >= params.stranger_min_face_frac else "ignored"
        notes.append(FaceNote(tr.id, tr.distance, round(tr.size), rel, role))
    dark = stats.luma_mean < params.dark_luma
    uniform = stats.luma_std < params.uniform_std
    roles = {n.role for n in notes}
    label: PresenceState
    if user is not None:
        label = "peeking" if "other" in roles else "present"
    elif "stranger" in roles:
        label = "impersonation"
    elif not notes and (dark or uniform):
        label = "camera_blocked"
    else:
        label = "away"
    return Observation(t, label, params.threshold, tuple(notes), stats, dark, uniform)
