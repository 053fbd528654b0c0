"""HTML of the live page, from a table of LiveState values. Pure: values in, text out.

Stable DOM hooks for browser tests and scripts: the table has ``id="live-table"``, each row
``data-agent="<agent_id>"`` and ``data-status="<status>"``, each cell ``data-field="<name>"``;
each count has ``data-count="<status>"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, tzinfo
from html import escape
from typing import Literal

from realtime.protocol import STATES_BY_URGENCY, LiveState, PresenceState

# Display statuses: the presence states most urgent first, then an agent online without a state
# yet and an offline one ("offline" wins over the last known state).
Status = PresenceState | Literal["unknown", "offline"]
STATUSES: tuple[Status, ...] = (*STATES_BY_URGENCY, "unknown", "offline")
LABELS: dict[Status, str] = {
    **{state: state.replace("_", " ").capitalize() for state in STATES_BY_URGENCY},  # "Camera blocked"
    "unknown": "No state yet",
    "offline": "Offline",
}
COLUMNS: tuple[tuple[str, str], ...] = (
    ("agent", "Agent"),
    ("user", "User"),
    ("connection", "Connection"),
    ("state", "State"),
    ("on_duty", "On duty"),
    ("task", "Task"),
    ("since", "Since"),
    ("last_seen", "Last seen"),
)

CSS = """
:host { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933; }
.counts { display: flex; flex-wrap: wrap; gap: 12px; margin: 4px 0 8px; }
.count { min-width: 118px; padding: 10px 14px; border-radius: 8px; background: #f5f7fa;
         border-left: 4px solid var(--c); }
.count .n { font-size: 26px; font-weight: 600; line-height: 1.1; }
.count .l { font-size: 12px; color: #52606d; text-transform: uppercase; letter-spacing: .04em; }
.count.zero { opacity: .55; }
.status { font-size: 13px; color: #52606d; margin: 0 0 4px; }
.status.down { color: #b42318; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th { text-align: left; font-weight: 600; color: #52606d; font-size: 12px; text-transform: uppercase;
     letter-spacing: .04em; padding: 8px 10px; border-bottom: 2px solid #e4e7eb; }
td { padding: 8px 10px; border-bottom: 1px solid #eef1f4; white-space: nowrap; }
tr.offline td { color: #9aa5b1; }
tr.offline .badge { background: #e4e7eb; color: #7b8794; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 12px;
         font-weight: 600; color: #fff; background: var(--c); }
.dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px;
       background: var(--c); }
.muted { color: #9aa5b1; }
.empty { padding: 24px; text-align: center; color: #7b8794; }
"""

COLORS: dict[Status, str] = {
    "impersonation": "#b42318",
    "peeking": "#d9480f",
    "camera_blocked": "#9c36b5",
    "camera_unavailable": "#7048e8",
    "away": "#e0a100",
    "present": "#2f9e44",
    "unknown": "#868e96",
    "offline": "#adb5bd",
}


def status_of(state: LiveState) -> Status:
    """The display status of an agent: ``offline``, its presence state, or ``unknown``."""
    if not state.online:
        return "offline"
    return state.state or "unknown"


def counts(table: Mapping[str, LiveState]) -> dict[Status, int]:
    """Number of agents per display status, every status present (zeros included)."""
    found = Counter(status_of(s) for s in table.values())
    return {status: found.get(status, 0) for status in STATUSES}


def format_time(value: datetime | None, tz: tzinfo | None, now: datetime) -> str:
    """Local time of ``value``: ``HH:MM:SS`` today, ``YYYY-MM-DD HH:MM`` otherwise, ``—`` if None."""
    if value is None:
        return "—"
    local = value.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def render_counts(table: Mapping[str, LiveState]) -> str:
    """The tiles with the number of agents per status."""
    tiles = []
    for status, n in counts(table).items():
        zero = " zero" if n == 0 else ""
        tiles.append(
            f'<div class="count{zero}" data-count="{status}" style="--c:{COLORS[status]}">'
            f'<div class="n">{n}</div><div class="l">{LABELS[status]}</div></div>'
        )
    return f'<div class="counts" id="live-counts">{"".join(tiles)}</div>'


def render_status(agents: int, connected: bool, tenant: str, now: datetime, tz: tzinfo | None) -> str:
    """One line under the tiles: tenant, agent count, connection to the live feed."""
    if not connected:
        return (
            '<p class="status down" id="live-status" data-connected="false">'
            f"Reconnecting to the live feed… (tenant {escape(tenant)})</p>"
        )
    return (
        '<p class="status" id="live-status" data-connected="true">'
        f"Tenant <b>{escape(tenant)}</b> · {agents} agent{'s' if agents != 1 else ''} · "
        f"updated {format_time(now, tz, now)}</p>"
    )


def _row(state: LiveState, tz: tzinfo | None, now: datetime) -> str:
    status = status_of(state)
    shown: Status = state.state or "unknown"
    hint = "" if state.online else ' title="last known state"'
    cells = {
        "agent": escape(state.agent_id),
        "user": escape(state.user) if state.user else '<span class="muted">—</span>',
        "connection": (
            f'<span class="dot" style="--c:{COLORS["present" if state.online else "offline"]}"></span>'
            f"{'online' if state.online else 'offline'}"
        ),
        "state": f'<span class="badge" style="--c:{COLORS[shown]}"{hint}>{LABELS[shown]}</span>',
        "on_duty": "on duty" if state.on_duty else '<span class="muted">off duty</span>',
        "task": escape(state.task) if state.task else '<span class="muted">—</span>',
        "since": format_time(state.since, tz, now),
        "last_seen": format_time(state.last_seen, tz, now),
    }
    tds = "".join(f'<td data-field="{name}">{cells[name]}</td>' for name, _ in COLUMNS)
    return f'<tr class="{status}" data-agent="{escape(state.agent_id)}" data-status="{status}">{tds}</tr>'


def sort_key(state: LiveState) -> tuple[str, str]:
    """Rows in a stable order: by user name (agents without one last), then agent id."""
    return ((state.user or "\uffff").casefold(), state.agent_id)


def render_table(table: Mapping[str, LiveState], tz: tzinfo | None, now: datetime) -> str:
    """The table of agents, one row per agent."""
    head = "".join(f"<th>{label}</th>" for _, label in COLUMNS)
    if not table:
        body = f'<tr><td class="empty" colspan="{len(COLUMNS)}">No agents have reported yet.</td></tr>'
    else:
        body = "".join(_row(s, tz, now) for s in sorted(table.values(), key=sort_key))
    return f'<table id="live-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
