"""Settings of ``telework agent``, from ``TELEWORK_AGENT_*`` and ``TELEWORK_GATEWAY_URL``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.config import SettingsModel, load

AGENT_VERSION = "0.1.0"


class AgentConfig(SettingsModel):
    """Field ``x`` is read from ``TELEWORK_X`` (see core.config.load)."""

    gateway_url: str = Field(default="ws://127.0.0.1:8700/v1/agent", pattern=r"^wss?://")
    agent_token: str | None = None
    agent_tokens_file: Path | None = None  # JSON list of tokens or {agent_id: token}
    agent_events_per_s: float = Field(default=1.0, gt=0, le=100_000)
    agent_batch_max: int = Field(default=200, ge=1, le=1000)
    agent_backoff_base_s: float = Field(default=0.5, gt=0)
    agent_backoff_cap_s: float = Field(default=30.0, gt=0)
    agent_open_timeout_s: float = Field(default=10.0, gt=0)
    # the gateway connection's safety (agent/tls.py; README "Production: TLS")
    agent_allow_insecure: bool = False  # development only: allow ws:// to a host that is not loopback
    agent_tls_ca_file: Path | None = None  # PEM CA certificates trusted for wss://; unset: the system's
    agent_tls_pin: str = Field(default="", max_length=2000)  # sha256/<base64> pins of the gateway's key
    agent_model_dir: Path | None = None  # face-model packs; unset: <user data dir>/models
    agent_face_engine: Literal["auto", "dlib", "insightface"] = "auto"  # auto: insightface if pack present
    agent_model_pack: str = Field(default="buffalo_s", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    # offline spool, evidence upload and bandwidth (agent/spool.py, agent/bandwidth.py)
    agent_data_dir: Path | None = None  # spool-v1.sqlite3 lives here; unset: <user data dir>
    agent_spool_images: int = Field(default=500, ge=1, le=100_000)  # image ring size (camera + screen)
    agent_upload_kbps: float = Field(default=160.0, gt=0, le=1_000_000)  # image upload pace
    agent_upload_chunk_bytes: int = Field(default=8192, ge=1024, le=64 * 1024)  # bytes per chunk frame
    agent_usage_report_s: float = Field(default=600.0, ge=0)  # usage event period; 0: never


def load_agent_config(environ: Mapping[str, str] | None = None, **overrides: object) -> AgentConfig:
    """Read the agent's settings once; raises ConfigError naming a bad variable."""
    return load(AgentConfig, environ, **overrides)


class MonitorConfig(AgentConfig):
    """Settings of ``telework agent --source`` (the real pipeline), on top of AgentConfig."""

    agent_source: str | None = None  # webcam[:INDEX] | video:PATH | folder:PATH | scene:demo
    agent_template: Path | None = None  # the user's face template (telework agent enroll --out)
    agent_evidence_dir: Path | None = None  # evidence images by sha256; unset: <user data dir>/evidence
    # camera, punches and the local page (agent/cameras.py, agent/desk.py, agent/control.py)
    agent_camera: int | None = Field(default=None, ge=0, le=63)  # webcam index; set: --source webcam:INDEX
    agent_resolution: str = Field(default="640x480", pattern=r"^\s*\d{2,5}\s*[xX]\s*\d{2,5}\s*$")
    agent_page: bool = True  # serve the local page and control channel on 127.0.0.1
    agent_page_port: int = Field(default=8765, ge=0, le=65535)  # 0: any free port (see control.json)
    agent_language: Literal["auto", "ja", "en"] = "auto"  # auto: from LANG (ja_* -> ja), else en
    agent_tasks: str = ""  # comma-separated stand-in task list until the server offers tasks; "": any
    agent_punch_max_age_s: float = Field(default=2.0, gt=0, le=30)  # a punch needs a frame this recent
    # live face detection (agent/detect/detection.py): auto plans the width per frame
    agent_detect_width: str = "auto"  # auto | a fixed width in pixels, 32-4096
    agent_detect_max_upsample: float = Field(default=2.0, ge=1.0, le=4.0)  # auto: at most this x the frame

    @field_validator("agent_detect_width")
    @classmethod
    def _detect_width(cls, value: str) -> str:
        from agent.detect.detection import WIDTH_EXPECTED, parse_width

        try:
            parse_width(value)
        except ValueError:
            raise ValueError(WIDTH_EXPECTED) from None  # load() adds what arrived
        return value.strip().lower()


def load_monitor_config(environ: Mapping[str, str] | None = None, **overrides: object) -> MonitorConfig:
    """Read the settings of ``telework agent --source``; raises ConfigError naming a bad variable."""
    return load(MonitorConfig, environ, **overrides)


def agent_data_dir(config: AgentConfig) -> Path:
    """Where the agent keeps its spool: TELEWORK_AGENT_DATA_DIR, else the user's data folder."""
    if config.agent_data_dir is not None:
        return config.agent_data_dir.expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("telework-supporter", appauthor=False)) / "agent"
