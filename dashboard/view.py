"""HTML of the live page, from a table of LiveState values. Pure: values in, text out.

Stable DOM hooks for browser tests and scripts: the table has ``id="live-table"``, each row
``data-agent="<agent_id>"`` and ``data-status="<status>"``, each cell ``data-field="<name>"``;
each count has ``data-count="<status>"``.

Nothing a live state holds can break the page: a time that cannot be shown, a state this
release does not know, over-long text or text with control characters are shown as a
placeholder (``?``, cut with ``…``, control characters as U+FFFD), and a row that still
cannot be drawn becomes one "unreadable" row; the rest of the table is drawn as usual.
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


UNREADABLE = "?"  # shown for a value that cannot be displayed (a time out of range, a state unknown here)
MAX_SHOWN = 80  # characters of a name or task shown in a cell (the rest cut with "…")


def shown_state(state: LiveState) -> Status:
    """The presence state to show: the agent's, or ``unknown`` (none yet, or one not known here)."""
    value = state.state
    return value if isinstance(value, str) and value in STATES_BY_URGENCY else "unknown"


def status_of(state: LiveState) -> Status:
    """The display status of an agent: ``offline``, its presence state, or ``unknown``."""
    if not state.online:
        return "offline"
    return shown_state(state)


def display_text(value: object, limit: int = MAX_SHOWN) -> str | None:
    """Text for a cell: None for nothing; control and other unprintable characters replaced by U+FFFD;
    cut to ``limit`` characters with "…". Not yet HTML-escaped."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text


def counts(table: Mapping[str, LiveState]) -> dict[Status, int]:
    """Number of agents per display status, every status present (zeros included)."""
    found = Counter(status_of(s) for s in table.values())
    return {status: found.get(status, 0) for status in STATUSES}


def format_time(value: datetime | None, tz: tzinfo | None, now: datetime) -> str:
    """Local time of ``value``: ``HH:MM:SS`` today, ``YYYY-MM-DD HH:MM`` otherwise, ``—`` if None,
    ``?`` (:data:`UNREADABLE`) when it cannot be shown in ``tz`` (out of range, not a time)."""
    if value is None:
        return "—"
    try:
        local = value.astimezone(tz)
        if local.date() == now.astimezone(tz).date():
            return local.strftime("%H:%M:%S")
        return local.strftime("%Y-%m-%d %H:%M")
    except (OverflowError, ValueError, OSError, TypeError, AttributeError):
        return UNREADABLE


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


def _cell_text(value: object) -> str:
    text = display_text(value)
    return '<span class="muted">—</span>' if text is None else escape(text)


def _state_badge(state: LiveState) -> str:
    shown = shown_state(state)
    if state.state is not None and shown == "unknown":  # a state this release does not know
        title = f"unknown state {escape(display_text(state.state) or '')}"
        return f'<span class="badge" style="--c:{COLORS["unknown"]}" title="{title}">{UNREADABLE}</span>'
    hint = "" if state.online else ' title="last known state"'
    return f'<span class="badge" style="--c:{COLORS[shown]}"{hint}>{LABELS[shown]}</span>'


def _row(state: LiveState, tz: tzinfo | None, now: datetime) -> str:
    status = status_of(state)
    agent = escape(display_text(state.agent_id) or UNREADABLE)
    cells = {
        "agent": agent,
        "user": _cell_text(state.user),
        "connection": (
            f'<span class="dot" style="--c:{COLORS["present" if state.online else "offline"]}"></span>'
            f"{'online' if state.online else 'offline'}"
        ),
        "state": _state_badge(state),
        "on_duty": "on duty" if state.on_duty else '<span class="muted">off duty</span>',
        "task": _cell_text(state.task),
        "since": format_time(state.since, tz, now),
        "last_seen": format_time(state.last_seen, tz, now),
    }
    tds = "".join(f'<td data-field="{name}">{cells[name]}</td>' for name, _ in COLUMNS)
    return f'<tr class="{status}" data-agent="{agent}" data-status="{status}">{tds}</tr>'


def _unreadable_row(key: str) -> str:
    agent = escape(display_text(key) or UNREADABLE)
    return (
        f'<tr class="unknown" data-agent="{agent}" data-status="unknown"><td data-field="agent">{agent}</td>'
        f'<td class="muted" colspan="{len(COLUMNS) - 1}">unreadable live state</td></tr>'
    )


def sort_key(state: LiveState) -> tuple[str, str]:
    """Rows in a stable order: by user name (agents without one last), then agent id."""
    return (str(state.user or "\uffff").casefold(), str(state.agent_id))


def render_row(key: str, state: LiveState, tz: tzinfo | None, now: datetime) -> str:
    """One agent's row; a state that cannot be drawn at all is one "unreadable live state" row."""
    try:
        return _row(state, tz, now)
    except Exception:  # the last line of defence: one bad record never breaks the page
        return _unreadable_row(key)


def render_table(table: Mapping[str, LiveState], tz: tzinfo | None, now: datetime) -> str:
    """The table of agents, one row per agent."""
    head = "".join(f"<th>{label}</th>" for _, label in COLUMNS)
    if not table:
        body = f'<tr><td class="empty" colspan="{len(COLUMNS)}">No agents have reported yet.</td></tr>'
    else:
        try:
            rows = sorted(table.items(), key=lambda item: sort_key(item[1]))
        except Exception:  # an unsortable value: the table's own order
            rows = list(table.items())
        body = "".join(render_row(key, s, tz, now) for key, s in rows)
    return f'<table id="live-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
