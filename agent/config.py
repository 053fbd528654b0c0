"""Settings of ``telework agent``, from ``TELEWORK_AGENT_*`` and ``TELEWORK_GATEWAY_URL``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from telework.config import SettingsModel, load

AGENT_VERSION = "0.1.0"


class AgentConfig(SettingsModel):
    """Field ``x`` is read from ``TELEWORK_X`` (see telework.config.load)."""

    gateway_url: str = Field(default="ws://127.0.0.1:8700/v1/agent", pattern=r"^wss?://")
    agent_token: str | None = None
    agent_tokens_file: Path | None = None  # JSON list of tokens or {agent_id: token}
    agent_events_per_s: float = Field(default=1.0, gt=0, le=100_000)
    agent_batch_max: int = Field(default=200, ge=1, le=1000)
    agent_backoff_base_s: float = Field(default=0.5, gt=0)
    agent_backoff_cap_s: float = Field(default=30.0, gt=0)
    agent_open_timeout_s: float = Field(default=10.0, gt=0)
    agent_model_dir: Path | None = None  # face-model packs; unset: <user data dir>/models
    agent_face_engine: Literal["auto", "dlib", "insightface"] = "auto"  # auto: insightface if pack present
    agent_model_pack: str = Field(default="buffalo_s", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def load_agent_config(environ: Mapping[str, str] | None = None, **overrides: object) -> AgentConfig:
    """Read the agent's settings once; raises ConfigError naming a bad variable."""
    return load(AgentConfig, environ, **overrides)
