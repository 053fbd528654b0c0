"""The pure parts of the console's devices: live-state parsing, ids, role rules, times shown."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from core.ids import SLUG_RE
from realtime.live_states import states_of
from realtime.protocol import LiveState, encode
from web.devices import ACTIONS, DeviceRow, joined, may, plausible_id
from web.pages_devices import shown

AT = datetime(2027, 1, 15, 8, 30, tzinfo=UTC)
ROW = DeviceRow("pc-1", "pc-1", 7, "wataru", "Wataru", AT, None)


def live(agent_id: str = "pc-1", tenant: str = "acme", online: bool = True) -> LiveState:
    return LiveState(tenant=tenant, agent_id=agent_id, online=online, last_seen=AT, agent_version="2.0")


def test_states_of_keeps_only_readable_states_of_the_tenant_under_their_own_id() -> None:
    """Unreadable values, another tenant's state and a state filed under another id are dropped."""
    raw: dict[str | bytes, str | bytes] = {
        b"pc-1": encode(live()).encode(),
        "pc-2": encode(live("pc-2")),
        "pc-3": "{not json",
        "pc-4": encode(live("pc-4", tenant="beta")),
        "pc-5": encode(live("pc-6")),
    }
    assert states_of(raw, "acme") == {"pc-1": live(), "pc-2": live("pc-2")}


TEXT_OR_BYTES = st.one_of(st.text(max_size=200), st.binary(max_size=200))


@given(st.dictionaries(TEXT_OR_BYTES, TEXT_OR_BYTES))
def test_states_of_never_raises_on_any_hash_content(raw: dict[str | bytes, str | bytes]) -> None:
    """Whatever the hash holds, the parser answers a dict of the tenant's states (none here)."""
    assert states_of(raw, "acme") == {}


@given(st.text(max_size=80))
def test_plausible_id_is_exactly_the_agent_id_shape(value: str) -> None:
    """A device id is plausible exactly when it is a slug."""
    assert plausible_id(value) == (SLUG_RE.fullmatch(value) is not None)


def test_plausible_id_refuses_a_trailing_newline_and_uppercase() -> None:
    """ "pc-1\\n" and "PC-1" are no device ids; "pc-1" is."""
    assert (plausible_id("pc-1"), plausible_id("pc-1\n"), plausible_id("PC-1")) == (True, False, False)


def test_only_administrators_may_act_on_devices() -> None:
    """Every action for admin, none for manager or worker."""
    assert {(role, a) for role in ("admin", "manager", "worker") for a in ACTIONS if may(role, a)} == {
        ("admin", a) for a in ACTIONS
    }


def test_joined_shows_the_live_state_or_says_it_is_unknown() -> None:
    """Known and live: online with version; known and absent: offline, never seen; unknown: all None."""
    on = joined(ROW, live(online=True), known=True)
    assert (on.live_known, on.online, on.last_seen, on.agent_version) == (True, True, AT, "2.0")
    off = joined(ROW, None, known=True)
    assert (off.live_known, off.online, off.last_seen, off.agent_version) == (True, False, None, None)
    lost = joined(ROW, live(), known=False)
    assert (lost.live_known, lost.online, lost.last_seen, lost.agent_version) == (False, None, None, None)


def test_shown_is_the_moment_in_the_given_zone() -> None:
    """08:30 UTC is 17:30 in Tokyo and 08:30 in UTC; nothing for None."""
    assert (shown(AT, "Asia/Tokyo"), shown(AT, "UTC"), shown(None, "UTC")) == (
        "2027-01-15 17:30",
        "2027-01-15 08:30",
        "",
    )


@given(st.lists(st.from_regex(SLUG_RE, fullmatch=True), unique=True, max_size=5))
def test_states_of_keeps_every_state_filed_under_its_own_id(agent_ids: list[str]) -> None:
    """Each agent's state under its id comes back as it was stored, str or bytes alike."""
    raw: dict[str | bytes, str | bytes] = {a.encode(): encode(live(a)) for a in agent_ids}
    assert states_of(raw, "acme") == {a: live(a) for a in agent_ids}
