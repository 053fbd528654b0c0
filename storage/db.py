"""Database engines: SQLite (WAL) by default, PostgreSQL through psycopg 3 when configured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from storage.models import SCHEMA_VERSION, SchemaVersion, utcnow

log = logging.getLogger(__name__)


class SchemaError(RuntimeError):
    """The database is not at the schema version this code needs."""


def sqlite_url(data_dir: Path) -> str:
    """The embedded default database in the data folder."""
    return f"sqlite:///{(data_dir / 'telework.db').resolve()}"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create an engine; SQLite connections get WAL mode and a busy timeout."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def upgrade(engine: Engine) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; returns the version now applied."""
    import storage.models  # noqa: F401  (registers every table)

    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        row = session.get(SchemaVersion, 1)
        if row is None:
            session.add(SchemaVersion(id=1, version=SCHEMA_VERSION, applied_at=utcnow()))
        elif row.version != SCHEMA_VERSION:
            row.version = SCHEMA_VERSION
            row.applied_at = utcnow()
            session.add(row)
        session.commit()
    log.info("database schema at version %s", SCHEMA_VERSION, extra={"url": _safe(engine)})
    return SCHEMA_VERSION


def check_schema(engine: Engine) -> None:
    """Stop start-up with a clear message when ``telework db upgrade`` has not been run."""
    if not inspect(engine).has_table("schema_version"):
        raise SchemaError(
            f"database {_safe(engine)} has no schema; run `telework db upgrade` first"
        )
    with Session(engine) as session:
        version = session.exec(select(SchemaVersion.version)).scalar_one_or_none()  # type: ignore[call-overload]
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"database {_safe(engine)} is at schema version {version}, this code needs "
            f"{SCHEMA_VERSION}; run `telework db upgrade`"
        )


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


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
