"""Database engines and the schema: SQLite (WAL) by default, PostgreSQL through psycopg 3.

The schema is owned by the Alembic migrations shipped in ``storage/migrations``:
:func:`upgrade` runs ``alembic upgrade head`` programmatically on an engine, and
:func:`check_schema` stops a server started on a database that is not at head.
A database created before the migrations (``create_all`` plus a ``schema_version``
table, no ``alembic_version``) is stamped at revision 0001, which is exactly that
schema, and upgraded from there.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import create_engine

from core.errors import OperatorError
from core.settings import ServerSettings
from storage.audit_witness import protect_with_settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LEGACY_REVISION = "0001"  # the schema the create_all era produced
TABLE_MODULES = (
    "storage.models",
    "storage.activity",
    "storage.evidence_models",
    "storage.planning",
    "storage.calendars",
    "storage.audit_models",
    "storage.agent_settings_models",
    "storage.web_models",
    "storage.policy_models",
)


class SchemaError(OperatorError):
    """The database is not at the schema revision this code needs."""


class DatabaseUnavailable(OperatorError):
    """The database cannot be reached or opened; the message names it and what the driver said."""


def ping(engine: Engine) -> None:
    """Connect once; a failure becomes :class:`DatabaseUnavailable` naming the database and the cause."""
    try:
        with engine.connect():
            pass
    except (OperationalError, InterfaceError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise DatabaseUnavailable(f"database {_safe(engine)} cannot be reached: {reason}") from None


def import_tables() -> MetaData:
    """Import every table module; returns the metadata they are registered on."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    from storage.models import METADATA

    return METADATA


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when it returns (NORMAL in WAL mode may lose the last commits in
    # a power cut); the `stored` watermark tells agents to delete their copy after a commit.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    # deleted rows (an erased person's) are overwritten with zeros, not left in free pages
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create an engine; SQLite connections get WAL mode and a busy timeout."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot create the folder of database {database}: {exc.strerror or exc}"
                ) from None
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def open_database(settings: ServerSettings, pool_size: int = 5) -> Engine:
    """The deployment's database (``settings.database()``), reachable and at the schema this code
    needs, its audit entries authenticated with the deployment's key (read at the first entry)."""
    engine = make_engine(settings.database(), pool_size)
    try:
        check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    protect_with_settings(engine, settings)
    return engine


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the PostgreSQL server of ``server_url``; returns its URL."""
    url = make_url(normalise_url(server_url))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (closing its connections) on the server of ``server_url``."""
    admin = create_engine(make_url(normalise_url(server_url)), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# ----------------------------------------------------------------- migrations


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this code needs (the head of the packaged migrations)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision; None when it has none."""
    ping(engine)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply the migrations up to ``revision``; returns the revision the database is now at."""
    ping(engine)
    with engine.begin() as conn:
        tables = set(inspect(conn).get_table_names())
        config = alembic_config(conn)
        if "schema_version" in tables and "alembic_version" not in tables:
            log.info(
                "database predates the migrations; stamping it at revision %s",
                LEGACY_REVISION,
                extra={"url": _safe(engine), "revision": LEGACY_REVISION},
            )
            command.stamp(config, LEGACY_REVISION)
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(config, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    log.info(
        "database schema at revision %s",
        after,
        extra={"url": _safe(engine), "from_revision": before, "revision": after},
    )
    return after or "base"


def downgrade(engine: Engine, revision: str) -> str:
    """Revert the migrations down to ``revision`` (``base``: an empty database)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    log.info("database schema at revision %s", after, extra={"url": _safe(engine), "revision": after})
    return after or "base"


def check_schema(engine: Engine) -> None:
    """Stop start-up with a clear message when ``telework db upgrade`` has not been run."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        if inspect(engine).has_table("schema_version"):
            raise SchemaError(
                f"database {_safe(engine)} has the schema of an older release, this code needs "
                f"revision {head}; run `telework db upgrade`"
            )
        raise SchemaError(f"database {_safe(engine)} has no schema; run `telework db upgrade` first")
    raise SchemaError(
        f"database {_safe(engine)} is at revision {current}, this code needs {head}; "
        "run `telework db upgrade`"
    )


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
