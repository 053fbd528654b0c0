"""The presence state over time, with hysteresis (pure).

Each analysed frame brings an :class:`~agent.detect.classify.Observation` whose
``label`` is what that frame alone argues for. The state becomes the label only when
the label has held long enough:

* ``present``: ``present_after_s`` of frames labelled present;
* ``peeking``: ``peeking_after_s`` of frames with the user and another big face;
* ``impersonation``: ``incident_after_s`` of frames with faces, none of them the user's;
* ``away``: ``away_after_s`` since the user's face was last seen, the frame labelled away;
* ``camera_blocked`` / ``camera_unavailable``: ``camera_after_s`` of such frames;

and, always, at least ``min_frames`` consecutive frames of that label, so one bad
frame never flips a state. Parameters come from the server's AgentSettings
(:meth:`MachineParams.from_settings`), so a settings push changes behaviour at the
next frame. Every transition carries a decision trace: the label, how long it held
against which requirement, and the numbers of the deciding frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agent.detect.classify import Observation
from realtime.protocol import (
    CAMERA_STATES,
    USER_SEEN_STATES,
    AgentSettings,
    IncidentKind,
    IncidentPhase,
    PresenceState,
    is_incident,
)


@dataclass(frozen=True)
class MachineParams:
    away_after_s: float = 30.0
    incident_after_s: float = 3.0
    peeking_after_s: float = 1.0
    camera_after_s: float = 2.0
    present_after_s: float = 1.0
    min_frames: int = 2

    @classmethod
    def from_settings(
        cls, settings: AgentSettings, present_after_s: float = 1.0, min_frames: int = 2
    ) -> MachineParams:
        return cls(
            away_after_s=settings.away_after_s,
            incident_after_s=settings.incident_after_s,
            peeking_after_s=settings.peeking_after_s,
            camera_after_s=settings.camera_after_s,
            present_after_s=present_after_s,
            min_frames=min_frames,
        )


@dataclass(frozen=True)
class Streak:
    """The current run of consecutive frames with the same label."""

    label: PresenceState
    since: float
    frames: int


@dataclass(frozen=True)
class MachineState:
    state: PresenceState | None = None  # None until the first state is confirmed
    entered_at: float | None = None
    streak: Streak | None = None
    no_user_since: float | None = None  # first frame of the current run without the user's face
    last_t: float | None = None


@dataclass(frozen=True)
class Transition:
    t: float
    previous: PresenceState | None
    state: PresenceState
    trace: dict[str, Any]


def _target(
    ms: MachineState, label: PresenceState, params: MachineParams
) -> tuple[PresenceState, float, float, str]:
    """The state ``label`` leads to from ``ms.state``, since when it holds, how long it must, and why."""
    since = ms.streak.since if ms.streak is not None else 0.0
    if label == "present":
        return "present", since, params.present_after_s, "present_after_s"
    if label == "peeking":
        return "peeking", since, params.peeking_after_s, "peeking_after_s"
    if label == "impersonation":
        return "impersonation", since, params.incident_after_s, "incident_after_s"
    if label in CAMERA_STATES:
        return label, since, params.camera_after_s, "camera_after_s"
    # away: no user's face. Right after the user was seen, wait away_after_s since the last
    # sighting. After peeking the user is still counted present until then; after an incident
    # state or at start-up nobody is in front of the camera, which is away once settled.
    if ms.state == "present":
        no_user = ms.no_user_since if ms.no_user_since is not None else since
        return "away", no_user, params.away_after_s, "away_after_s"
    if ms.state == "peeking":
        return "present", since, params.present_after_s, "present_after_s"
    return "away", since, params.present_after_s, "present_after_s"


def step(ms: MachineState, obs: Observation, params: MachineParams) -> tuple[MachineState, Transition | None]:
    """Feed one observation; returns the new machine state and the transition it caused, if any."""
    t = obs.t
    if ms.last_t is not None and t < ms.last_t:
        raise ValueError(f"observation time went backwards: {t} after {ms.last_t}")
    label = obs.label
    if ms.streak is not None and ms.streak.label == label:
        streak = replace(ms.streak, frames=ms.streak.frames + 1)
    else:
        streak = Streak(label, t, 1)
    user_seen = label in USER_SEEN_STATES
    no_user_since = None if user_seen else (ms.no_user_since if ms.no_user_since is not None else t)
    ms = replace(ms, streak=streak, no_user_since=no_user_since, last_t=t)
    if label == ms.state:
        return ms, None
    state, since, required, rule = _target(ms, label, params)
    held = t - since
    if state == ms.state or streak.frames < params.min_frames or held < required:
        return ms, None
    trace = {
        "from": ms.state,
        "to": state,
        "label": label,
        "rule": rule,
        "held_s": round(held, 3),
        "required_s": required,
        "since": round(since, 3),
        "frames": streak.frames,
        "min_frames": params.min_frames,
        "observation": obs.trace(),
    }
    return replace(ms, state=state, entered_at=t), Transition(t, ms.state, state, trace)


def incident_phases(transition: Transition) -> list[tuple[IncidentKind, IncidentPhase]]:
    """Incidents a transition ends and starts: leaving an incident state ends it, entering starts one."""
    out: list[tuple[IncidentKind, IncidentPhase]] = []
    previous, state = transition.previous, transition.state
    if is_incident(previous):
        out.append((previous, "end"))
    if is_incident(state):
        out.append((state, "start"))
    return out
