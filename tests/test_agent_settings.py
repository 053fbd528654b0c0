"""Agent settings inheritance, sources and bounds: the pure module and the wire model, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from realtime.protocol import AgentSettings, ProtocolError, parse_record
from realtime.protocol.agent_settings import (
    DEFAULTS,
    FIELDS,
    Change,
    GroupLayer,
    SettingsError,
    SettingsLayers,
    allowed,
    apply_changes,
    check_value,
    describe,
    flag_of,
    parse_value,
    resolve,
    tenant_layers,
    value_text,
)
from realtime.tenant_settings import decode_layers

LAYERS = SettingsLayers(
    tenant={"threshold_level": 4, "away_after_s": 60.0},
    groups={
        1: GroupLayer(name="sales", overrides={"away_after_s": 120.0, "incident_action": "lock"}),
        2: GroupLayer(name="audit", overrides={"away_after_s": 90.0, "analysis_fps": 1.0}),
    },
    users={10: {"threshold_level": 5}},
    members={10: [1, 2], 11: [2]},
)


def test_defaults_only_every_source_is_default() -> None:
    """With no override anywhere an agent gets AgentSettings() and every field says 'default'."""
    effective = resolve(SettingsLayers(), 10)
    assert effective.settings == AgentSettings()
    assert dict(effective.sources) == dict.fromkeys(FIELDS, "default")


def test_tenant_then_groups_in_name_order_then_user() -> None:
    """User 10 (groups sales and audit) gets the tenant's, then audit's, then sales' (sorts last), then
    their own values, and each field names the level it came from."""
    effective = resolve(LAYERS, 10)
    assert effective.settings == AgentSettings(
        threshold_level=5, away_after_s=120.0, incident_action="lock", analysis_fps=1.0
    )
    assert {f: s for f, s in effective.sources.items() if s != "default"} == {
        "threshold_level": "user",
        "away_after_s": "group sales",
        "incident_action": "group sales",
        "analysis_fps": "group audit",
    }


def test_user_in_one_group_and_user_without_groups_and_agent_without_user() -> None:
    """User 11 (audit only) gets audit's away_after_s; user 12 (no group, no override) the tenant's;
    an agent without a user the tenant's."""
    assert resolve(LAYERS, 11).settings == AgentSettings(
        threshold_level=4, away_after_s=90.0, analysis_fps=1.0
    )
    assert resolve(LAYERS, 12).settings == AgentSettings(threshold_level=4, away_after_s=60.0)
    tenant_only = resolve(LAYERS, None)
    assert tenant_only.settings == AgentSettings(threshold_level=4, away_after_s=60.0)
    assert (tenant_only.sources["away_after_s"], tenant_only.sources["heartbeat_interval_s"]) == (
        "tenant",
        "default",
    )


def test_tenant_layers_hold_only_the_fields_set() -> None:
    """tenant_layers(AgentSettings(analysis_fps=0.2)) overrides exactly analysis_fps at the tenant level."""
    assert tenant_layers(AgentSettings(analysis_fps=0.2)) == SettingsLayers(tenant={"analysis_fps": 0.2})


def test_apply_changes_sets_unsets_and_reports_old_and_new() -> None:
    """Setting two fields and unsetting one gives the new overrides in field order and one Change each;
    a value equal to the current one is no change."""
    new, done = apply_changes(
        {"away_after_s": 60.0, "threshold_level": 4, "analysis_fps": 1.0},
        {"--away-after": 90, "incident_action": "lock", "analysis_fps": 1.0},
        ["threshold-level"],
    )
    assert new == {"analysis_fps": 1.0, "away_after_s": 90.0, "incident_action": "lock"}
    assert done == [
        Change("threshold_level", 4, None),
        Change("away_after_s", 60.0, 90.0),
        Change("incident_action", None, "lock"),
    ]
    assert apply_changes({"away_after_s": 60.0}, {"away_after_s": 60}) == ({"away_after_s": 60.0}, [])


def test_apply_changes_refuses_nothing_and_set_plus_unset() -> None:
    """No change at all, and a value plus --unset for the same field, are operator errors saying so."""
    with pytest.raises(SettingsError) as nothing:
        apply_changes({}, {})
    assert str(nothing.value) == "nothing to change: give at least one setting option or --unset (see --help)"
    with pytest.raises(SettingsError) as both:
        apply_changes({}, {"away_after_s": 5}, ["away_after_s"])
    assert str(both.value) == "away_after_s: expected either a new value or --unset, got both"


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        (
            "heartbeat_interval_s",
            "0.001",
            "heartbeat_interval_s: expected a number from 1 to 300, got '0.001'",
        ),
        ("other_face_min_ratio", "2.0", "other_face_min_ratio: expected a number from 0.1 to 1, got '2.0'"),
        ("away_after_s", "inf", "away_after_s: expected a number from 1 to 3600, got 'inf'"),
        ("away_after_s", "nan", "away_after_s: expected a number from 1 to 3600, got 'nan'"),
        ("threshold_level", "2.5", "threshold_level: expected an integer from 1 to 5, got '2.5'"),
        ("incident_action", "shout", "incident_action: expected one of log, lock, got 'shout'"),
    ],
)
def test_out_of_range_values_are_rejected_with_the_range(field: str, text: str, message: str) -> None:
    """A command-line value outside the model's bounds (or not finite) is refused naming field and range."""
    with pytest.raises(SettingsError) as err:
        parse_value(field, text)
    assert str(err.value) == message


def test_values_in_range_are_parsed_to_the_model_type() -> None:
    """'60' for a float field is 60.0, '5' for threshold_level is 5, the bounds themselves are allowed."""
    assert (parse_value("away_after_s", "60"), parse_value("threshold_level", "5")) == (60.0, 5)
    assert (parse_value("heartbeat_interval_s", "1"), parse_value("other_face_min_ratio", "1")) == (1.0, 1.0)
    assert check_value("incident_action", "lock") == "lock"


@pytest.mark.parametrize(
    "values",
    [
        {"heartbeat_interval_s": 0.001},
        {"other_face_min_ratio": 2.0},
        {"away_after_s": float("inf")},
        {"away_after_s": float("nan")},
    ],
    ids=["0.001", "2.0", "inf", "nan"],
)
def test_wire_model_rejects_what_the_cli_rejects(values: dict[str, float]) -> None:
    """The bounds live in AgentSettings itself: building or decoding such settings fails."""
    with pytest.raises(ValidationError):
        AgentSettings(**values)
    with pytest.raises(ProtocolError):
        parse_record('{"away_after_s": 1e999, "other_face_min_ratio": 2.0}', AgentSettings)


def test_every_field_has_a_flag_a_range_and_a_description() -> None:
    """Flags, ranges and help come from the model: each field has all three."""
    assert [flag_of(f) for f in FIELDS] == [
        "--heartbeat-interval",
        "--threshold-level",
        "--analysis-fps",
        "--away-after",
        "--incident-after",
        "--evidence-interval",
        "--incident-action",
        "--peeking-after",
        "--camera-after",
        "--other-face-min-ratio",
    ]
    assert all(AgentSettings.model_fields[f].description for f in FIELDS)
    assert allowed("analysis_fps") == "a number from 0.1 to 30"


def test_cached_layers_out_of_bounds_are_a_cache_miss() -> None:
    """A cached or announced value outside the bounds is unreadable (None: read the database), valid JSON
    decodes to the same layers."""
    assert decode_layers("acme", '{"v": 1, "tenant": {"away_after_s": 1e999}}') is None
    assert decode_layers("acme", '{"v": 1, "users": {"3": {"threshold_level": 9}}}') is None
    assert decode_layers("acme", '{"threshold_level": 5}') is None  # the old AgentSettings format
    assert decode_layers("acme", LAYERS.model_dump_json()) == LAYERS


def test_readme_bounds_table_matches_the_model() -> None:
    """The README's pushed-settings table has, for every field, its flag, default and range from the model."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [
        f
        for f in FIELDS
        if f"| `{f}` | `{flag_of(f)}` | {value_text(getattr(DEFAULTS, f))} | {allowed(f)} | {describe(f)} |"
        not in readme
    ]
    assert missing == []
