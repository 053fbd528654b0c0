"""The presence vocabulary: the states an agent reports and the incidents they start. Pure.

Defined here once; the agent (classification, state machine), the workers, the storage
models and the dashboard import these names and never spell the values out again.

* :data:`PresenceState`: what the state machine says about the teleworker (``state`` events);
* :data:`IncidentKind`: the states that are incidents (``incident`` events), each a
  presence state of the same name;
* :data:`IncidentPhase`: an incident starts when its state is entered and ends when it is left.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

PresenceState = Literal["present", "away", "peeking", "impersonation", "camera_blocked", "camera_unavailable"]
IncidentKind = Literal["peeking", "impersonation", "camera_blocked"]
IncidentPhase = Literal["start", "end"]

PRESENCE_STATES: tuple[PresenceState, ...] = get_args(PresenceState)
INCIDENT_KINDS: tuple[IncidentKind, ...] = get_args(IncidentKind)
INCIDENT_PHASES: tuple[IncidentPhase, ...] = get_args(IncidentPhase)

# The camera gives no usable picture: covered or dark (an incident), or no frame at all.
CAMERA_STATES: tuple[PresenceState, ...] = ("camera_blocked", "camera_unavailable")
# The states the user's own face is seen in (with another face reading along, when peeking).
USER_SEEN_STATES: tuple[PresenceState, ...] = ("present", "peeking")
# Every presence state, most urgent first: the order the live page lists them in.
STATES_BY_URGENCY: tuple[PresenceState, ...] = (
    "impersonation",
    "peeking",
    "camera_blocked",
    "camera_unavailable",
    "away",
    "present",
)


def is_incident(state: str | None) -> TypeGuard[IncidentKind]:
    """Whether ``state`` is an incident state (its incident kind has the same name)."""
    return state in INCIDENT_KINDS
