"""Settings read once from environment variables into a typed, frozen object.

Every program (server processes, agent) has one settings model. ``load`` maps
each field ``name`` to the variable ``TELEWORK_NAME`` and turns any bad or
missing value into a :class:`ConfigError` that names the variable, what was
expected and what arrived, so start-up stops with a message an operator can act on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import OperatorError

PREFIX = "TELEWORK_"

M = TypeVar("M", bound=BaseModel)


class ConfigError(OperatorError, ValueError):
    """A setting is missing or has a value that cannot be used."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class SettingsModel(BaseModel):
    """Base for settings objects: immutable, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def env_key(field: str) -> str:
    """The environment variable that sets ``field``."""
    return PREFIX + field.upper()


def load(model: type[M], environ: Mapping[str, str] | None = None, **overrides: object) -> M:
    """Build ``model`` from ``TELEWORK_*`` variables; ``overrides`` (e.g. CLI flags) win.

    Empty variables count as unset, so ``TELEWORK_REDIS_URL=`` selects the default.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name in model.model_fields:
        raw = env.get(env_key(name))
        if raw is not None and raw.strip() != "":
            values[name] = raw.strip()
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        arrived = values.get(field, "<unset>")
        raise ConfigError(env_key(field), f"{first['msg']} (got {arrived!r})") from None
