"""Users' face templates from the server to their agents: announced on Redis, built from storage.

A change of a user's images (:mod:`web.faces`) is announced on :func:`templates_channel` (the
message is the user id; the database is the truth, so a lost announcement only delays the push
until the agent's next connection). The gateway builds the user's :class:`TemplatePush` from
the database (:func:`build_push`) and sends it to every open session of the user's agents; a
session gets it in its welcome too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from core.settings import ServerSettings
from realtime import keys
from realtime.connection import Connection
from realtime.protocol.face_templates import (
    MAX_TEMPLATE_BODIES,
    MAX_TEMPLATE_EMBEDDINGS,
    TemplateBody,
    TemplatePush,
    encode_embedding,
)
from realtime.pushes import push
from realtime.tenant_settings import resubscribe_delay
from storage import face_images
from storage.accounts import AgentIdentity
from storage.keyring import Keyring, load_master_key

log = logging.getLogger(__name__)


TEMPLATES_CHANNEL_PATTERN = "tw:*:face-templates"  # matches every tenant's templates_channel
LISTEN_WAKE_S = 1.0  # the listener wakes up this often to see a stop
Builder = Callable[[str, int], TemplatePush]  # (tenant, user id) -> the user's current template


def templates_channel(tenant: str) -> str:
    """Pub/sub channel on which a tenant's users whose face images changed are announced (user id)."""
    return f"tw:{{{tenant}}}:face-templates"


async def announce(redis: aioredis.Redis, tenant: str, user_id: int) -> bool:
    """Announce that ``user_id``'s template changed; False (logged) when Redis cannot be reached."""
    try:
        await redis.publish(templates_channel(tenant), str(user_id))
    except (RedisError, OSError) as exc:
        log.error(
            "face template change not announced", extra={"tenant": tenant, "user": user_id, "error": str(exc)}
        )
        return False
    return True


def parse_announcement(data: bytes | str) -> int | None:
    """Pure: the user id of an announcement, or None for anything else."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    return int(text) if text.isdigit() and 0 < len(text) <= 10 and 0 < int(text) < 2**31 else None


def build_push(
    engine: Engine, keyring: Keyring | Callable[[], Keyring], tenant: str, user_id: int
) -> TemplatePush:
    """The user's current template: their images' embeddings, one body per engine and model.

    ``keyring`` may be a function giving it: it is only needed (and a missing master key only
    matters) when the user has images."""
    models = sorted(
        {(found.engine, found.model_version) for found in face_images.images(engine, tenant, user_id)}
    )
    keys = (keyring if isinstance(keyring, Keyring) else keyring()) if models else None
    bodies: list[TemplateBody] = []
    for engine_name, version in models[:MAX_TEMPLATE_BODIES]:
        assert keys is not None
        vectors = face_images.embeddings(engine, keys, tenant, user_id, engine_name, version)
        texts = [encode_embedding([float(x) for x in v]) for _, v in vectors][-MAX_TEMPLATE_EMBEDDINGS:]
        if texts:
            bodies.append(TemplateBody(engine=engine_name, model_version=version, embeddings=texts))
    digest = hashlib.sha256()
    for body in bodies:
        digest.update(body.model_dump_json().encode())
    return TemplatePush(user_id=user_id, revision=digest.hexdigest(), templates=bodies)


class TemplatePusher:
    """The gateway's part: each session's welcome carries its user's template (:meth:`current`),
    and every open session of a user whose images changed (announced on :func:`templates_channel`)
    gets a ``template`` frame.

    ``build`` reads the database (it runs in a thread); an announcement lost while Redis was away
    is made good at the agent's next connection, which always gets the current template."""

    def __init__(
        self,
        redis: aioredis.Redis,
        sessions: Callable[[], Mapping[str, Iterable[Connection]]],
        build: Builder,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.build = build
        self.subscribed = asyncio.Event()
        self._stopping = asyncio.Event()

    async def _frame(self, tenant: str, user_id: int) -> TemplatePush | None:
        try:
            return await asyncio.to_thread(self.build, tenant, user_id)
        except Exception as exc:  # database or keys unavailable: the next connection tries again
            log.error("face template not built", extra={"tenant": tenant, "user": user_id, "error": str(exc)})
            return None

    async def current(self, identity: AgentIdentity) -> TemplatePush | None:
        """The current template of the agent's user, for its welcome; None when it cannot be read."""
        return None if identity.user_id is None else await self._frame(identity.tenant, identity.user_id)

    async def push_user(self, tenant: str, user_id: int) -> int:
        """Send the user's current template to every open session of theirs; how many got it."""
        targets = [c for c in self.sessions().get(tenant, ()) if c.identity.user_id == user_id]
        if not targets:
            return 0
        frame = await self._frame(tenant, user_id)
        if frame is None:
            return 0
        return await push(tenant, "template", [(c, frame) for c in targets])

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until :meth:`stop`: hear announcements and push; subscribe again after a Redis failure."""
        failures = 0
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(TEMPLATES_CHANNEL_PATTERN)
                while not self._stopping.is_set():
                    message = await pubsub.get_message(timeout=LISTEN_WAKE_S)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self.subscribed.set()
                        failures = 0
                    elif message["type"] == "pmessage":
                        await self._on_message(str(message["channel"]), message["data"])
            except (RedisError, OSError) as exc:
                failures += 1
                log.warning(
                    "face template subscription lost", extra={"error": str(exc), "failures": failures}
                )
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            if failures and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(resubscribe_delay(failures)):
                        await self._stopping.wait()

    async def _on_message(self, channel: str, data: bytes | str) -> None:
        try:
            tenant = keys.tenant_of(channel)
        except ValueError:
            log.error("face template message on an unexpected channel", extra={"channel": channel})
            return
        user_id = parse_announcement(data)
        if user_id is None:
            log.error("unreadable face template announcement", extra={"tenant": tenant})
            return
        await self.push_user(tenant, user_id)


def database_builder(settings: ServerSettings, engine: Engine) -> Builder:
    """Builds templates from ``engine``'s rows; the master key is read at the first build."""
    keyring: list[Keyring] = []

    def keys() -> Keyring:
        if not keyring:
            keyring.append(Keyring(load_master_key(settings), engine))
        return keyring[0]

    def build(tenant: str, user_id: int) -> TemplatePush:
        return build_push(engine, keys, tenant, user_id)

    return build
