"""Tenant agent settings with inheritance: tenant -> the user's groups -> the user. Pure, no I/O.

Each level stores only the fields it overrides (an :data:`Overrides` mapping, validated field by
field against :class:`~realtime.protocol.AgentSettings`, the one place the bounds are written).
:class:`SettingsLayers` holds every override of one tenant: it is what
:mod:`storage.agent_settings_store` reads from the database, what the gateway caches in Redis
and what a change announces to the gateways. :func:`resolve` turns it into the effective
settings of one user and the source of each value: ``default``, ``tenant``, ``group NAME`` or
``user``. A user in several groups gets them in name order, so for a field two of its groups
set, the group whose name sorts last wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import Field, ValidationError, field_validator

from core.errors import OperatorError
from realtime.protocol.base import WireModel
from realtime.protocol.events import AgentSettings

Level = Literal["tenant", "group", "user"]
SettingValue = int | float | str
Overrides = Mapping[str, SettingValue]  # field -> value, only the fields a level sets

FIELDS: tuple[str, ...] = tuple(AgentSettings.model_fields)
DEFAULTS = AgentSettings()
LAYERS_VERSION: Final = 1  # of the SettingsLayers JSON in the cache and announcements


class SettingsError(OperatorError, ValueError):
    """A settings change or lookup cannot be made; the message says what was expected and what came."""


# ------------------------------------------------------------------ fields


def flag_of(field: str) -> str:
    """The command-line flag of ``field``: ``away_after_s`` -> ``--away-after``."""
    return "--" + field.removesuffix("_s").replace("_", "-")


def field_of(name: str) -> str:
    """``name`` (a field or its flag, ``--away-after``) as a field name; SettingsError when unknown."""
    for field in FIELDS:
        if name in (field, flag_of(field), flag_of(field)[2:]):
            return field
    raise SettingsError(f"setting: expected one of {', '.join(FIELDS)}, got {name!r}")


def choices(field: str) -> tuple[str, ...] | None:
    """The allowed values of a text setting (``incident_action``); None for a number."""
    annotation = AgentSettings.model_fields[field].annotation
    args = getattr(annotation, "__args__", None)
    return tuple(str(a) for a in args) if args and all(isinstance(a, str) for a in args) else None


def bounds(field: str) -> tuple[float | None, float | None]:
    """The inclusive (or exclusive, for gt/lt) lower and upper bound of a numeric field."""
    low: float | None = None
    high: float | None = None
    for rule in AgentSettings.model_fields[field].metadata:
        if isinstance(rule, Ge | Gt):
            low = float(rule.ge if isinstance(rule, Ge) else rule.gt)  # type: ignore[arg-type]
        elif isinstance(rule, Le | Lt):
            high = float(rule.le if isinstance(rule, Le) else rule.lt)  # type: ignore[arg-type]
    return low, high


def number_text(value: float) -> str:
    """``60.0`` -> ``60``, ``0.5`` -> ``0.5``, ``86400`` -> ``86400``."""
    return f"{value:g}" if abs(value) < 1e6 else str(int(value))


def allowed(field: str) -> str:
    """What ``field`` accepts, for help texts and errors: ``a number from 1 to 3600``."""
    options = choices(field)
    if options is not None:
        return "one of " + ", ".join(options)
    low, high = bounds(field)
    kind = "an integer" if AgentSettings.model_fields[field].annotation is int else "a number"
    if low is not None and high is not None:
        return f"{kind} from {number_text(low)} to {number_text(high)}"
    return kind


def describe(field: str) -> str:
    """The meaning of ``field`` (its ``description`` in the model)."""
    return AgentSettings.model_fields[field].description or field


def check_value(field: str, value: object) -> SettingValue:
    """``value`` for ``field`` as the model takes it; SettingsError naming the field and its range."""
    if field not in FIELDS:
        raise SettingsError(f"setting: expected one of {', '.join(FIELDS)}, got {field!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{field}: expected {allowed(field)}, got {value!r}")
    try:
        checked = AgentSettings.model_validate({field: value})
    except ValidationError:
        raise SettingsError(f"{field}: expected {allowed(field)}, got {value!r}") from None
    result: SettingValue = getattr(checked, field)
    return result


def parse_value(field: str, text: str) -> SettingValue:
    """A command-line value for ``field``: ``"60"`` -> ``60.0``; SettingsError with the range."""
    if choices(field) is not None:
        return check_value(field, text.strip())
    kind = AgentSettings.model_fields[field].annotation
    try:
        number: float = int(text) if kind is int else float(text)
    except ValueError:
        raise SettingsError(f"{field}: expected {allowed(field)}, got {text!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise SettingsError(f"{field}: expected {allowed(field)}, got {text!r}")
    try:
        return check_value(field, number)
    except SettingsError:
        raise SettingsError(f"{field}: expected {allowed(field)}, got {text!r}") from None


def clean_overrides(values: Mapping[str, object]) -> tuple[dict[str, SettingValue], list[str]]:
    """The valid part of stored ``values`` (field order) and one problem per dropped entry."""
    clean: dict[str, SettingValue] = {}
    problems: list[str] = []
    for field, value in values.items():
        try:
            clean[field] = check_value(field, value)
        except SettingsError as exc:
            problems.append(str(exc))
    return {f: clean[f] for f in FIELDS if f in clean}, problems


# ------------------------------------------------------------------ layers


def _checked(values: Mapping[str, SettingValue]) -> dict[str, SettingValue]:
    clean, problems = clean_overrides(values)
    if problems:
        raise ValueError("; ".join(problems))
    return clean


class GroupLayer(WireModel):
    """One group's overrides, with its name (for sources and ordering)."""

    name: str
    overrides: dict[str, SettingValue] = Field(default_factory=dict)

    _valid = field_validator("overrides")(_checked)


class SettingsLayers(WireModel):
    """Every override of one tenant, and which users are in the groups that have some."""

    v: Literal[1] = LAYERS_VERSION
    tenant: dict[str, SettingValue] = Field(default_factory=dict)
    groups: dict[int, GroupLayer] = Field(default_factory=dict)  # group id -> its overrides
    users: dict[int, dict[str, SettingValue]] = Field(default_factory=dict)  # user id -> overrides
    members: dict[int, list[int]] = Field(default_factory=dict)  # user id -> ids in ``groups``

    _valid_tenant = field_validator("tenant")(_checked)

    @field_validator("users")
    @classmethod
    def _valid_users(cls, value: dict[int, dict[str, SettingValue]]) -> dict[int, dict[str, SettingValue]]:
        return {user: _checked(values) for user, values in value.items()}


def tenant_layers(settings: AgentSettings) -> SettingsLayers:
    """Layers whose tenant level sets the fields set in ``settings`` (no group or user levels)."""
    return SettingsLayers(tenant=settings.model_dump(exclude_unset=True))


@dataclass(frozen=True)
class Effective:
    """The settings an agent gets, and where each value comes from (field -> source)."""

    settings: AgentSettings
    sources: Mapping[str, str]


def resolve(layers: SettingsLayers, user_id: int | None, groups: Iterable[int] | None = None) -> Effective:
    """Defaults, then the tenant, then the user's groups in name order, then the user.

    ``groups`` overrides the memberships the layers know (``members``); ``user_id`` None: an agent
    without a user gets the tenant's settings.
    """
    values: dict[str, SettingValue] = {}
    sources: dict[str, str] = dict.fromkeys(FIELDS, "default")

    def apply(overrides: Mapping[str, SettingValue], source: str) -> None:
        for field, value in overrides.items():
            values[field] = value
            sources[field] = source

    apply(layers.tenant, "tenant")
    if groups is None:
        groups = layers.members.get(user_id, []) if user_id is not None else []
    found = [layers.groups[g] for g in groups if g in layers.groups]
    for layer in sorted(found, key=lambda g: g.name):
        apply(layer.overrides, f"group {layer.name}")
    if user_id is not None:
        apply(layers.users.get(user_id, {}), "user")
    return Effective(AgentSettings.model_validate(values), sources)


# ------------------------------------------------------------------ changes


@dataclass(frozen=True)
class Change:
    """One field of one level changed: ``old`` / ``new`` None means not set there (inherited)."""

    field: str
    old: SettingValue | None
    new: SettingValue | None


def apply_changes(
    current: Overrides, changes: Mapping[str, object], unset: Sequence[str] = ()
) -> tuple[dict[str, SettingValue], list[Change]]:
    """Pure: ``current`` overrides with ``changes`` set and ``unset`` removed, and what changed.

    Every value is checked against the model; SettingsError names the first bad one. Setting a
    field to the value it already has is no change.
    """
    if not changes and not unset:
        raise SettingsError("nothing to change: give at least one setting option or --unset (see --help)")
    checked = {field_of(f): check_value(field_of(f), v) for f, v in changes.items()}
    cleared = [field_of(f) for f in unset]
    both = sorted(set(checked) & set(cleared))
    if both:
        raise SettingsError(f"{both[0]}: expected either a new value or --unset, got both")
    new: dict[str, Any] = {**current, **checked}
    for field in cleared:
        new.pop(field, None)
    done = [
        Change(field, current.get(field), new.get(field))
        for field in FIELDS
        if current.get(field) != new.get(field)
    ]
    return {f: new[f] for f in FIELDS if f in new}, done


def value_text(value: SettingValue | None) -> str:
    """A value as the commands print it (``unset`` for an inherited one)."""
    if value is None:
        return "unset"
    if isinstance(value, float):
        return number_text(value)
    return str(value)
