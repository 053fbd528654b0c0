"""The presence vocabulary: defined once in realtime.protocol, used as is by the agent and the dashboard."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.detect.state_machine import Transition, incident_phases
from agent.i18n import LANGUAGES, catalog
from dashboard import view
from realtime.protocol import (
    CAMERA_STATES,
    INCIDENT_KINDS,
    INCIDENT_PHASES,
    PRESENCE_STATES,
    STATES_BY_URGENCY,
    USER_SEEN_STATES,
    IncidentPayload,
    StatePayload,
    is_incident,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_values() -> None:
    """The states, incident kinds and phases are exactly the protocol v1 values, in this order."""
    assert PRESENCE_STATES == (
        "present",
        "away",
        "peeking",
        "impersonation",
        "camera_blocked",
        "camera_unavailable",
    )
    assert INCIDENT_KINDS == ("peeking", "impersonation", "camera_blocked")
    assert INCIDENT_PHASES == ("start", "end")
    assert STATES_BY_URGENCY == (
        "impersonation",
        "peeking",
        "camera_blocked",
        "camera_unavailable",
        "away",
        "present",
    )
    assert (CAMERA_STATES, USER_SEEN_STATES) == (
        ("camera_blocked", "camera_unavailable"),
        ("present", "peeking"),
    )


def test_wire_models_accept_exactly_the_vocabulary() -> None:
    """StatePayload takes every presence state and IncidentPayload every kind and phase; nothing else."""
    assert [StatePayload(state=s).state for s in PRESENCE_STATES] == list(PRESENCE_STATES)
    pairs = [(k, p) for k in INCIDENT_KINDS for p in INCIDENT_PHASES]
    assert [(i.kind, i.phase) for i in (IncidentPayload(kind=k, phase=p) for k, p in pairs)] == pairs
    with pytest.raises(ValidationError):
        StatePayload.model_validate({"state": "offline"})
    with pytest.raises(ValidationError):
        IncidentPayload.model_validate({"kind": "away", "phase": "start"})
    with pytest.raises(ValidationError):
        IncidentPayload.model_validate({"kind": "peeking", "phase": "middle"})


def test_is_incident() -> None:
    """Exactly the incident kinds are incident states; None (no state yet) is not."""
    assert [s for s in PRESENCE_STATES if is_incident(s)] == list(INCIDENT_KINDS)
    assert is_incident(None) is False


def test_incident_phases_from_the_vocabulary() -> None:
    """Leaving an incident state for another ends the first and starts the second; present to away neither."""
    assert incident_phases(Transition(1.0, "peeking", "impersonation", {})) == [
        ("peeking", "end"),
        ("impersonation", "start"),
    ]
    assert incident_phases(Transition(1.0, None, "camera_blocked", {})) == [("camera_blocked", "start")]
    assert incident_phases(Transition(1.0, "present", "away", {})) == []


def test_dashboard_statuses_labels_and_colours() -> None:
    """The live page lists the states most urgent first, then unknown and offline; each labelled, coloured."""
    assert view.STATUSES[:-2] == STATES_BY_URGENCY
    assert view.STATUSES[-2:] == ("unknown", "offline")
    assert list(view.LABELS) == list(view.STATUSES)
    assert set(view.COLORS) == set(view.STATUSES)
    assert (view.LABELS["camera_unavailable"], view.LABELS["unknown"]) == (
        "Camera unavailable",
        "No state yet",
    )


def test_agent_texts_for_every_state() -> None:
    """The local page has a text for every presence state in every language."""
    missing = [(lang, s) for lang in LANGUAGES for s in PRESENCE_STATES if f"state.{s}" not in catalog(lang)]
    assert missing == []


def _state_lists(folder: Path) -> list[str]:
    """Tuples, lists, sets and Literal[...] of three or more presence-state strings in ``folder``."""
    states = set(PRESENCE_STATES)
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Tuple | ast.List | ast.Set):
                continue
            values = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(values & states) >= 3:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize("folder", ["agent", "dashboard"])
def test_no_copy_of_the_state_list(folder: str) -> None:
    """Neither the agent nor the dashboard spells out the states again (tuple, list, set or Literal)."""
    assert _state_lists(ROOT / folder) == []
