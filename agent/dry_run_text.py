"""The table, CSV and summary of ``telework agent try`` (:mod:`agent.dry_run`); pure.

A :class:`Row` is one state change with its decision trace as the agent sends it (``from``,
``to``, ``rule``, ``held_s`` against ``required_s``, ``frames`` against ``min_frames``, and the
deciding frame's ``observation``: each face's role, distance to the template and size, the
threshold, the brightness). :func:`cells` gives a row's text under :data:`COLUMNS` (the
command aligns them), :func:`csv_text` writes the trace's numbers in columns plus the whole
trace as JSON, :func:`summary` counts the frames and the time spent in each state.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from realtime.protocol import AgentSettings

TRY_FIELDS = (  # the AgentSettings that change what the pipeline decides: flags of `telework agent try`
    "threshold_level",
    "analysis_fps",
    "away_after_s",
    "incident_after_s",
    "peeking_after_s",
    "camera_after_s",
    "other_face_min_ratio",
)
COLUMNS = ("time", "t_s", "change", "rule", "held/need_s", "frames", "faces (role distance height)", "luma")
CSV_COLUMNS = (
    "at",
    "t_s",
    "from",
    "to",
    "label",
    "rule",
    "held_s",
    "required_s",
    "since_s",
    "frames",
    "min_frames",
    "threshold",
    "user_distance",
    "faces",
    "luma_mean",
    "luma_std",
    "dark",
    "uniform",
    "reason",
    "trace",
)


@dataclass(frozen=True)
class Row:
    """One state change of the timeline, with its decision trace (as the agent sends it)."""

    at: datetime  # the agent clock's time of the deciding frame
    t: float  # seconds on the source's clock
    previous: str | None
    state: str
    trace: dict[str, Any]

    @property
    def observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = self.trace.get("observation", {})
        return obs


@dataclass
class Played:
    """What a dry run saw: the state changes, the frames analysed and their span on the source clock."""

    rows: list[Row]
    frames: int = 0
    first_t: float | None = None
    last_t: float | None = None
    interrupted: bool = False  # ended by Ctrl-C
    elapsed_s: float = 0.0  # the run's time on the monotonic clock


def faces_text(observation: dict[str, Any]) -> str:
    """``user 0.312 180px, other 0.702 120px x0.67``: each face's role, distance to the template
    and height (and, but for the user, its size relative to the user's or to the frame)."""
    if "reason" in observation:
        return f"no frame: {observation['reason']}"
    parts = []
    for face in observation.get("faces", []):
        distance = "-" if face.get("distance") is None else f"{face['distance']:.3f}"
        text = f"{face['role']} {distance} {face['height_px']}px"
        if face["role"] != "user":
            text += f" x{face['rel_size']:.2f}"
        parts.append(text)
    return ", ".join(parts) or "no face"


def luma_text(observation: dict[str, Any]) -> str:
    """``118 sd 41`` (mean and standard deviation of the brightness), ``dark``/``uniform`` when so."""
    if "luma_mean" not in observation:
        return "-"
    flags = [name for name in ("dark", "uniform") if observation.get(name)]
    return " ".join([f"{observation['luma_mean']:.0f} sd {observation['luma_std']:.0f}", *flags])


def cells(row: Row) -> tuple[str, ...]:
    trace = row.trace
    return (
        row.at.strftime("%H:%M:%S.%f")[:-3],
        f"{row.t:.1f}",
        f"{row.previous or '-'} -> {row.state}",
        str(trace.get("rule", "")),
        f"{trace.get('held_s', 0):g}/{trace.get('required_s', 0):g}",
        f"{trace.get('frames', '')}/{trace.get('min_frames', '')}",
        faces_text(row.observation),
        luma_text(row.observation),
    )


def csv_text(rows: Sequence[Row]) -> str:
    """The rows as CSV: the numbers of each trace in columns, and the whole trace as JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        trace, obs = row.trace, row.observation
        distance = next((f.get("distance") for f in obs.get("faces", []) if f.get("role") == "user"), None)
        values: list[object] = [
            row.at.isoformat(timespec="milliseconds"),
            round(row.t, 3),
            row.previous or "",
            row.state,
            trace.get("label", ""),
            trace.get("rule", ""),
            trace.get("held_s", ""),
            trace.get("required_s", ""),
            trace.get("since", ""),
            trace.get("frames", ""),
            trace.get("min_frames", ""),
            obs.get("threshold", ""),
            "" if distance is None else distance,
            faces_text(obs),
            obs.get("luma_mean", ""),
            obs.get("luma_std", ""),
            obs.get("dark", ""),
            obs.get("uniform", ""),
            obs.get("reason", ""),
            json.dumps(trace, sort_keys=True, separators=(",", ":")),
        ]
        writer.writerow(values)
    return out.getvalue()


def durations(rows: Sequence[Row], end_t: float) -> dict[str, float]:
    """Seconds spent in each state, from its transition to the next one (the last: to ``end_t``)."""
    spent: dict[str, float] = {}
    for i, row in enumerate(rows):
        until = rows[i + 1].t if i + 1 < len(rows) else end_t
        spent[row.state] = round(spent.get(row.state, 0.0) + max(0.0, until - row.t), 3)
    return spent


def summary(played: Played) -> str:
    """``40 frames (0-19.5 s of source time) analysed in 3.1 s, 78 ms/frame; 3 state changes; time in
    states: present 12.5 s, away 6 s``."""
    if played.frames == 0 or played.first_t is None or played.last_t is None:
        return "no frame analysed"
    per_frame = played.elapsed_s / played.frames * 1000
    spent = ", ".join(
        f"{state} {seconds:g} s" for state, seconds in durations(played.rows, played.last_t).items()
    )
    return (
        f"{played.frames} frames ({played.first_t:g}-{played.last_t:g} s of source time) analysed in "
        f"{played.elapsed_s:.1f} s, {per_frame:.0f} ms/frame; {len(played.rows)} state changes"
        + (f"; time in states: {spent}" if spent else "")
        + ("; stopped by Ctrl-C" if played.interrupted else "")
    )


def settings_text(settings: AgentSettings, threshold: float) -> str:
    """``threshold_level 3 (distance 0.4), analysis_fps 2, away_after_s 30, ...``."""
    values = {f: getattr(settings, f) for f in TRY_FIELDS}
    parts = [f"{f} {v:g}" if isinstance(v, float) else f"{f} {v}" for f, v in values.items()]
    parts[0] += f" (distance {threshold:g})"
    return ", ".join(parts)
