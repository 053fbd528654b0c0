"""``telework admin erase-user``: a person erased from the database, the evidence store and Redis.

The order, each step safe to repeat:

1. the Redis in use must answer (else nothing is erased); an erasure of the tenant left
   unfinished earlier (its rows gone, objects or Redis not yet) is finished first;
2. the user is disabled and their agents revoked (:func:`storage.personal_erase.revoke`), so every
   gateway closes their sessions within ``TELEWORK_REVOCATION_CHECK_S``; the command waits until
   their live states say offline (at most twice that plus 5 s);
3. Redis: their stream entries, dead letters and live states go (:func:`realtime.erase.erase_agents`),
   and their web console sessions end (:func:`web.session_store.end_user_sessions`);
4. the database: every declared row in one transaction with the ``user.erase`` audit entry
   (:func:`storage.personal_erase.erase_rows`), after the erasure manifest was stored;
5. the evidence store: the objects the rows named; Redis again (anything written between 3 and
   4), the tenant's settings cache rewritten, the append-only file rewritten; the manifest dropped
   and a ``user.erase.finish`` audit entry written.

A failure before 4 changes nothing but the revocation; after 4, the command says so and running
``erase-user`` again in the tenant finishes the erasure (:func:`storage.personal_erase.unfinished`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import OperatorError
from core.settings import ServerSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from realtime.erase import RedisErasure
    from storage.evidence_store import EvidenceStore
    from storage.personal_erase import Manifest

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 5.0
OFFLINE_MARGIN_S = 5.0  # beyond two revocation checks, how long to wait for sessions to close
R = TypeVar("R")


@dataclass
class Report:
    """What one erasure removed, for the operator (the audit entries hold the same by user id)."""

    target: str
    rows: dict[str, int] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    redis: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def redis_in_use(settings: ServerSettings, why: str, undone: str) -> str | None:
    """The Redis the command must reach, checked before it does anything; None: none configured or
    running. Unreachable: OperatorError saying ``why`` and that nothing was ``undone``."""
    import redis
    from redis.exceptions import RedisError

    from core.process import redis_url

    try:
        url = redis_url(settings, f"{why},")
    except OperatorError:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise OperatorError(
            f"Redis at {_safe(url)} cannot be reached ({type(exc).__name__}: {exc}); {why}: nothing was "
            f"{undone}, run it again once Redis is up"
        ) from None
    finally:
        client.close()
    return url


def redis_data(url: str, tenant: str, agents: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """What Redis holds about these agents (:func:`realtime.erase.agents_data`), for an export."""
    from realtime.erase import agents_data

    return _redis(url, lambda client: agents_data(client, tenant, agents))


def _safe(url: str) -> str:
    from redis.connection import parse_url

    password = parse_url(url).get("password")
    return url.replace(f":{password}@", ":***@") if password else url


def _redis(url: str, work: Callable[[Any], Awaitable[R]]) -> R:
    import redis.asyncio as aioredis

    async def run() -> R:
        client = aioredis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S * 6)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _sweep(url: str, tenant: str, agents: tuple[str, ...]) -> RedisErasure:
    from realtime.erase import erase_agents

    return _redis(url, lambda client: erase_agents(client, tenant, agents, datetime.now(UTC)))


def _redis_keys(tenant: str, erased: RedisErasure) -> dict[str, int]:
    from realtime import keys

    return {
        keys.events_stream(tenant): erased.events,
        keys.dead_letter_stream(tenant): erased.dead_letters,
        keys.live_hash(tenant): erased.live_states,
    }


def finish(
    settings: ServerSettings, engine: Engine, store: EvidenceStore, manifest: Manifest, url: str | None,
    actor: str, report: Report,
) -> None:  # fmt: skip
    """Step 5: objects, Redis once more, settings cache, AOF; the manifest dropped; audited."""
    from realtime.erase import rewrite_files
    from storage.personal_erase import delete_blobs, finished
    from telework.admin_settings import announce

    tenant = manifest.tenant
    try:
        report.blobs = delete_blobs(engine, store, manifest)
        if url is not None:
            swept = _sweep(url, tenant, manifest.agents)
            for key, n in _redis_keys(tenant, swept).items():
                report.redis[key] = report.redis.get(key, 0) + n
            failed = announce(settings, engine, tenant)
            report.notes.append("settings cache rewritten" if failed is None else f"settings cache: {failed}")
            report.notes.append(_redis(url, rewrite_files))
    except Exception as exc:
        raise OperatorError(
            f"user:{manifest.user_id} of tenant {tenant} is erased from the database, but the erasure is "
            f"unfinished ({type(exc).__name__}: {exc}); run `telework admin erase-user --tenant {tenant} "
            "... --yes` again to finish it"
        ) from None
    finished(engine, store, manifest, actor, blobs=report.blobs, redis=report.redis, notes=report.notes)


def resume(
    settings: ServerSettings, engine: Engine, store: EvidenceStore, tenant: str, url: str | None, actor: str
) -> list[Report]:
    """Step 1: finish the tenant's erasures that were interrupted after their commit."""
    from storage.personal_data import PersonalDataError
    from storage.personal_erase import load_manifest, unfinished

    reports = []
    for user_id in unfinished(engine, store, tenant):
        report = Report(f"user:{user_id}")
        reports.append(report)
        try:
            manifest = load_manifest(store, tenant, user_id)
        except PersonalDataError as exc:  # not one this server wrote: nothing in it is acted on
            report.warnings.append(f"{exc}; it was left as it is, remove it once checked")
            continue
        finish(settings, engine, store, manifest, url, actor, report)
    return reports


def erase(
    settings: ServerSettings, engine: Engine, store: EvidenceStore, tenant: str, login: str, actor: str,
    url: str | None,
) -> Report:  # fmt: skip
    """Steps 2-5 for one person (step 1 is :func:`resume`)."""
    from redis.exceptions import RedisError

    from realtime.erase import RedisErasure, wait_offline
    from storage.personal_data import check_not_held, find_subject
    from storage.personal_erase import erase_rows, revoke
    from web import keys as web_keys
    from web.session_store import end_user_sessions

    subject = find_subject(engine, tenant, login)
    with engine.connect() as conn:
        check_not_held(conn, subject)
    report = Report(subject.target)
    revoke(engine, subject, actor)
    swept = RedisErasure()
    if url is not None and subject.agents:
        timeout = 2 * settings.revocation_check_s + OFFLINE_MARGIN_S
        try:
            online = _redis(url, lambda client: wait_offline(client, tenant, subject.agents, timeout))
            swept = _sweep(url, tenant, subject.agents)
        except (RedisError, OSError) as exc:
            raise OperatorError(
                f"Redis at {_safe(url)} failed ({type(exc).__name__}: {exc}); user {login} of tenant "
                f"{tenant} is disabled and their agents revoked, nothing else was erased: run it again once "
                "Redis is up"
            ) from None
        if online:
            report.warnings.append(
                f"agents {', '.join(online)} still looked online after {timeout:g} s (a gateway that "
                "stopped?); their tokens are revoked"
            )
    report.redis = _redis_keys(tenant, swept) if url is not None else {}
    if url is not None:  # their web console sessions (user id, client address) end and go
        report.redis[web_keys.user_sessions_key(tenant, subject.user_id)] = _redis(
            url, lambda client: end_user_sessions(client, tenant, subject.user_id)
        )
    erased = erase_rows(engine, store, subject, actor, detail={"redis": swept.counts() if url else None})
    if engine.dialect.name == "sqlite":  # the deleted rows' pages out of the write-ahead log too
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    report.rows = erased.rows
    finish(settings, engine, store, erased.manifest, url, actor, report)
    return report


def describe(report: Report) -> list[str]:
    """Pure: the lines printed for one erasure: per table, per kind of object, per Redis key."""
    from storage.personal_registry import HOLDINGS

    verbs = {"delete": "deleted", "unlink": "unlinked", "pseudonymise": "pseudonymised", "keep": "kept"}
    lines = [f"  database {h.name}: {report.rows[h.name]} row(s) {verbs[h.action]}"
             for h in HOLDINGS if h.name in report.rows]  # fmt: skip
    lines += [f"  evidence store {name}: {n} object(s) deleted" for name, n in report.blobs.items()]
    lines += [f"  redis {key}: {n} removed" for key, n in report.redis.items()]
    lines += [f"  redis: {note}" for note in report.notes]
    return lines
