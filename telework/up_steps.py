"""The I/O steps of ``telework up`` before its children start: the log file, the embedded Redis
and its published URL, the database and its schema, the tenants. A step that starts something
puts its undoing on the caller's :class:`contextlib.ExitStack`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.logs import RotatingLogFile, setup_logging
from core.private import write_private
from core.process import redis_url_file
from core.settings import ServerSettings
from telework import console
from telework.console import progress_line, say

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def embedded_master_key(settings: ServerSettings) -> bool:
    """Pure: no TELEWORK_MASTER_KEY nor TELEWORK_MASTER_KEY_FILE: the key is a file in the data folder."""
    return settings.master_key is None and settings.master_key_file is None


def open_log(data_dir: Path, verbose: bool, undo: contextlib.ExitStack) -> RotatingLogFile:
    """The full log to ``DATA_DIR/logs/telework.log`` from now on; the terminal gets warnings and
    errors only (everything with ``verbose``)."""
    log_file = RotatingLogFile(console.log_path(data_dir))
    level = logging.getLogger().level or logging.INFO
    setup_logging(level, log_file, console_level=None if verbose else logging.WARNING)
    undo.callback(log_file.close)
    undo.callback(setup_logging, level)  # back to stderr only before the file closes
    return log_file


def tenant_ids(engine: Engine) -> list[str]:
    """The ids of the tenants in the database."""
    from sqlmodel import Session, select

    from storage.models import Tenant

    with Session(engine) as session:
        return list(session.exec(select(Tenant.id)))


def start_or_use_redis(
    settings: ServerSettings,
    data_dir: Path,
    undo: contextlib.ExitStack,
    watch: list[Callable[[], None]] | None = None,
) -> str:
    """TELEWORK_REDIS_URL, else an embedded redis-server in the data folder, its URL published in
    the data folder for the other commands; ``undo`` withdraws the URL, then stops the server."""
    if settings.redis_url:
        return settings.redis_url
    from realtime.embedded_redis import EmbeddedRedis

    redis = EmbeddedRedis(data_dir / "redis")
    url = redis.start()
    undo.callback(redis.stop)
    if watch is not None:
        watch.append(lambda: redis.revive(say))  # restarted on its port and AOF if it dies
    url_file = write_private(redis_url_file(data_dir), url + "\n")  # it holds the password
    undo.callback(url_file.unlink, missing_ok=True)
    say(progress_line("redis", f"embedded, 127.0.0.1:{redis.port}, password required ({redis.folder})"))
    return url


@contextlib.contextmanager
def engine_for(database_url: str, settings: ServerSettings) -> Iterator[Engine]:
    """An engine for one set-up step (its audit entries authenticated), disposed after it."""
    from storage.audit_witness import protect_with_settings
    from storage.db import make_engine

    engine = make_engine(database_url)
    protect_with_settings(engine, settings)
    try:
        yield engine
    finally:
        engine.dispose()


def prepare_database(settings: ServerSettings, data_dir: Path) -> str:
    """The database URL (SQLite in the data folder by default), upgraded to the current schema;
    in embedded key mode, the master key file (0600) created in the data folder first."""
    from storage.db import upgrade
    from storage.keyring import ensure_master_key

    database_url = settings.database()
    if embedded_master_key(settings):
        ensure_master_key(data_dir)
    with engine_for(database_url, settings) as engine:
        revision = upgrade(engine)
    say(
        progress_line("database", f"{engine.url.render_as_string(hide_password=True)} at revision {revision}")
    )
    return database_url
