"""Settings of the server programs (up, gateway, worker, dashboard), from ``TELEWORK_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from core.config import SettingsModel, load

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_URL_FILE = "redis.url"  # in data_dir: where a running `telework up` publishes its embedded Redis URL
DATABASE_FILE = "telework.db"  # in data_dir: the embedded SQLite database


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("telework-supporter", appauthor=False))


def sqlite_url(data_dir: Path) -> str:
    """The embedded default database in the data folder."""
    return f"sqlite:///{(data_dir.expanduser() / DATABASE_FILE).resolve()}"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _check_address(url: str) -> None:
    """Host and port of a network URL readable (ValueError naming what is wrong)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("the URL contains spaces or control characters")


class ServerSettings(SettingsModel):
    """One object for every server process; see the README's settings table."""

    data_dir: Path = Field(default_factory=default_data_dir)
    redis_url: str | None = None  # unset: embedded redis-server in data_dir
    database_url: str | None = None  # unset: SQLite (WAL) in data_dir

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8700, ge=0, le=65535)
    heartbeat_timeout_s: float = Field(default=15.0, gt=0)
    max_frame_bytes: int = Field(default=256 * 1024, ge=1024)
    # a tenant stream's capacity: at this many entries the gateway refuses events (store_full)
    stream_maxlen: int = Field(default=1_000_000, ge=1000)
    stored_poll_s: float = Field(default=0.1, gt=0, le=10)  # how often `stored` watermarks are read
    auth_cache_s: float = Field(default=30.0, ge=0)
    # sessions: revocation reaching open sessions, frame pacing (realtime/revocation.py, core/rate.py)
    revocation_check_s: float = Field(default=2.0, gt=0, le=3600)  # open sessions' tokens re-checked
    session_frames_per_s: float = Field(default=50.0, gt=0, le=100_000)  # frames read per session per second
    session_frame_burst: int = Field(default=200, ge=1, le=100_000)  # frames read at once before pacing

    # the window of client timestamps the gateway stores, around its clock (realtime/session.py)
    max_event_age_s: float = Field(default=30 * 86_400.0, ge=60, le=366 * 86_400)  # older: refused
    max_clock_skew_s: float = Field(default=300.0, ge=1, le=86_400)  # further ahead: refused

    # unset: {hostname}-{group}-{slot}, the first free slot of this host (workers/consumer_names.py)
    worker_name: str | None = Field(default=None, min_length=1, max_length=200)
    worker_batch: int = Field(default=1000, ge=1, le=10_000)
    worker_block_ms: int = Field(default=100, ge=1)
    claim_idle_ms: int = Field(default=30_000, ge=100)
    claim_interval_s: float = Field(default=10.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    tenant_refresh_s: float = Field(default=2.0, gt=0)
    # a consumer of a group idle this long with nothing pending is deleted (XGROUP DELCONSUMER)
    stale_consumer_s: float = Field(default=3600.0, gt=0, le=30 * 86_400)

    # stream trimming, by the persistence workers (workers/trim.py)
    trim_interval_s: float = Field(default=10.0, gt=0, le=3600)  # how often tenant streams are trimmed
    stream_keep_s: float = Field(default=3600.0, ge=0, le=7 * 86_400)  # consumed entries kept this long
    stream_warn_ratio: float = Field(default=0.8, gt=0, le=1)  # warn above this share of stream_maxlen
    dead_letter_keep_days: int = Field(default=30, ge=1, le=3650)  # dead letters kept this long
    dead_letter_warn: int = Field(default=1000, ge=1)  # warn when a dead-letter stream holds more

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8701, ge=0, le=65535)
    dashboard_tenant: str = "demo"

    # TLS of the gateway and the web console (core/tls.py; README "Production: TLS"): both or neither
    tls_cert: Path | None = None  # PEM certificate (chain); set: HTTPS/WSS, the console's cookie Secure
    tls_key: Path | None = Field(default=None, validate_default=True)  # its unencrypted PEM key (0600)

    # the web console (web/): sign-in, sessions, rate limits, password hashing (README "Web console")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8702, ge=0, le=65535)
    web_secure_cookie: bool = False  # True when served over TLS (directly or behind a TLS proxy)
    web_base_url: str = Field(default="http://127.0.0.1:8702", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    web_session_idle_s: int = Field(default=1800, ge=60, le=7 * 86_400)  # no request this long: ended
    web_session_absolute_s: int = Field(default=12 * 3600, ge=300, le=30 * 86_400)  # ended this long after
    web_setup_code_ttl_s: int = Field(default=72 * 3600, ge=300, le=30 * 86_400)  # a set-up link's life
    web_fail_window_s: int = Field(default=900, ge=1, le=86_400)  # window of the sign-in failure limits
    web_fails_per_account: int = Field(default=5, ge=1, le=10_000)  # failed sign-ins per login per window
    web_fails_per_address: int = Field(default=50, ge=1, le=1_000_000)  # per client address per window
    web_fails_per_account_total: int = Field(default=100, ge=1, le=1_000_000)  # per login, every address
    # argon2id: OWASP's recommended m=19 MiB, t=2, p=1 (a sign-in costs ~50 ms of one core)
    web_argon2_time_cost: int = Field(default=2, ge=1, le=20)  # argon2id passes
    web_argon2_memory_kib: int = Field(default=19_456, ge=8192, le=4 * 1024 * 1024)  # argon2id memory
    web_argon2_parallelism: int = Field(default=1, ge=1, le=64)  # argon2id lanes
    web_code_wait_s: int = Field(default=300, ge=30, le=3600)  # a sign-in waits this long for its TOTP code
    web_api_token_max_days: int = Field(default=365, ge=1, le=3650)  # longest expiry of an API token
    web_schedule_csv_max_bytes: int = Field(default=60_000, ge=1024, le=60_000)  # under the body limit
    web_schedule_csv_max_rows: int = Field(default=1000, ge=1, le=100_000)  # data rows of one schedule CSV
    web_dashboard_recheck_s: float = Field(default=10.0, ge=0.1, le=300)  # open boards re-check sign-in

    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    # evidence store and keys (storage/keyring.py, storage/evidence_store.py)
    master_key: SecretStr | None = None  # base64 of 32 bytes; else master_key_file; else data_dir/master.key
    master_key_file: Path | None = None
    evidence_backend: str = Field(default="local", pattern="^(local|s3)$")
    evidence_dir: Path | None = None  # local backend; unset: data_dir/evidence
    s3_endpoint_url: str | None = None  # unset: AWS; e.g. http://minio:9000
    s3_bucket: str = "telework-evidence"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    evidence_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # largest image an agent may upload
    # unfinished evidence uploads held by one gateway, in declared image bytes; beyond: refused (busy)
    evidence_pending_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=2**40)

    # face images (web/faces.py): the server's gate and the templates it builds
    face_engine: str = Field(default="auto", pattern="^(auto|dlib|insightface)$")  # as the agents'
    face_model_dir: Path | None = None  # insightface packs; unset: the agent's default model folder
    face_model_pack: str = "buffalo_s"
    face_upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    face_max_side: int = Field(default=4096, ge=64, le=16_384)  # pixels a side, read from the header
    face_images_per_user: int = Field(default=20, ge=1, le=50)  # a template frame carries 50 at most

    # retention (workers/retention.py)
    retention_days: int = Field(default=90, ge=1)
    # the bounds of a tenant's own retention period (storage/policies.py); a stored period
    # outside them is used as the nearest bound
    retention_min_days: int = Field(default=7, ge=1, le=36_500)
    retention_max_days: int = Field(default=3650, ge=1, le=36_500)
    terminated_erase_days: int = Field(default=30, ge=0)
    retention_batch: int = Field(default=1000, ge=1, le=100_000)
    retention_interval_s: float = Field(default=86_400.0, gt=0)

    # interval and incident builder (workers/builder.py)
    incident_merge_s: float = Field(default=60.0, ge=0)  # same-kind incidents this close merge into one
    builder_silence_s: float = Field(default=900.0, gt=0)  # offline this long: open intervals closed
    builder_reconcile_s: float = Field(default=60.0, gt=0)  # how often silent agents are looked for

    # attendance and task rollups (workers/rollup.py)
    rollup_interval_s: float = Field(default=30.0, gt=0)  # how often changed days are recomputed
    rollup_catchup_days: int = Field(default=3, ge=0)  # days recomputed for every user at start
    rollup_lag_s: float = Field(default=120.0, ge=0)  # overlap of incident change scans (late commits)

    @field_validator("data_dir", "master_key_file", "evidence_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        # `~` means the home folder everywhere, never a folder named "~" under the working folder.
        return None if value is None else value.expanduser().absolute()

    @field_validator("tls_cert", "tls_key", mode="after")
    @classmethod
    def _tls_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator("tls_key", mode="after")
    @classmethod
    def _tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        cert = info.data.get("tls_cert")
        if cert is not None and value is None:
            raise ValueError("required with TELEWORK_TLS_CERT (the certificate's private key)")
        if cert is None and value is not None and "tls_cert" not in info.data:
            return value  # TELEWORK_TLS_CERT itself was bad: that error is reported
        if cert is None and value is not None:
            raise ValueError("set TELEWORK_TLS_CERT too (the certificate of this key)")
        return value

    @field_validator("retention_max_days", mode="after")
    @classmethod
    def _retention_bounds(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("retention_min_days")
        if isinstance(low, int) and value < low:
            raise ValueError(f"expected at least TELEWORK_RETENTION_MIN_DAYS ({low}), got {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _tls_console(cls, data: Any) -> Any:
        """Served over TLS, the console's cookies are Secure and its links https:// by default."""
        if isinstance(data, dict) and data.get("tls_cert"):
            data = {**data, "web_secure_cookie": True}
            data.setdefault("web_base_url", "https://127.0.0.1:8702")
        return data

    @property
    def tls(self) -> bool:
        """The gateway and the console serve HTTPS/WSS."""
        return self.tls_cert is not None and self.tls_key is not None

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and _scheme(value) not in DATABASE_SCHEMES:
            raise ValueError(
                "expected an sqlite:/// or postgresql:// URL (e.g. postgresql://user@host:5432/db)"
            )
        if value is not None and _scheme(value) != "sqlite":
            _check_address(value)
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and _scheme(value) not in REDIS_SCHEMES:
            raise ValueError("expected a redis://, rediss:// or unix:// URL (e.g. redis://127.0.0.1:6379/0)")
        if value is not None and _scheme(value) != "unix":
            _check_address(value)
            database = urlsplit(value).path.strip("/")
            if database and not database.isdigit():
                raise ValueError(f"expected a database number after the address, got {database!r}")
        return value

    def database(self) -> str:
        """The database every process opens: TELEWORK_DATABASE_URL, else SQLite in data_dir."""
        return self.database_url or sqlite_url(self.data_dir)


def load_server_settings(**overrides: object) -> ServerSettings:
    """Read the server settings once at start; raises ConfigError naming a bad key."""
    return load(ServerSettings, None, **overrides)
