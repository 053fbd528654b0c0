"""Evidence upload over the session: spooled images -> binary chunk frames -> server confirmation.

One image at a time, incident evidence first (:func:`agent.spool.upload_order`). Each image is
cut into chunks of ``chunk_bytes`` (:func:`chunk_offsets`); before every chunk the uploader
waits until no event is waiting to be sent (events first) and for the session's pacer (the
bandwidth budget). After the last chunk it waits for ``evidence_stored`` (then the image
leaves the spool) or ``evidence_rejected`` (the image stays in the spool). A rejection the server
marks ``retry`` (its store or its upload budget is busy) is tried again on the same connection
after a pause (:func:`retry_delay`: 2 s doubling to 60 s); any other is skipped for the rest of
this connection (the next connection tries it again), except a face image of purpose
``enrollment`` refused by the server's face gate (``face_rejected``): it leaves the spool, its
reason kept in :attr:`Uploader.rejected` and logged. No reply within ``timeout_s`` ends the
session, so the agent reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from agent.spool import Spool, upload_order
from realtime.protocol import EvidenceChunk, EvidenceRejected, EvidenceStored, encode_evidence_chunk

log = logging.getLogger(__name__)

Reply = EvidenceStored | EvidenceRejected
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0


def retry_delay(previous: float | None) -> float:
    """The pause before sending an image again that the server asked to retry. Pure."""
    return RETRY_FIRST_S if previous is None else min(previous * 2, RETRY_MAX_S)


def chunk_offsets(size: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of a ``size``-byte image. Pure."""
    if size < 1 or chunk_bytes < 1:
        raise ValueError(f"expected size >= 1 and chunk_bytes >= 1, got {size=} {chunk_bytes=}")
    return [(start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]


class Uploader:
    """Uploads for one connection; :meth:`resolve` is fed the server's replies by the session reader."""

    def __init__(
        self,
        spool: Spool,
        send: Callable[[bytes], Awaitable[None]],  # paced send of one binary frame
        events_idle: Callable[[], Awaitable[object]],  # returns once no event waits to be sent
        chunk_bytes: int,
        timeout_s: float,
        on_reply: Callable[[bool], None],  # True: stored, False: rejected
        name: str = "",
    ) -> None:
        self.spool = spool
        self.send = send
        self.events_idle = events_idle
        self.chunk_bytes = chunk_bytes
        self.timeout_s = timeout_s
        self.on_reply = on_reply
        self.name = name
        self.skip: set[str] = set()  # rejected on this connection
        self.later: dict[str, tuple[float, float]] = {}  # sha -> (retry at, pause): asked to retry
        self.rejected: list[EvidenceRejected] = []  # every rejection on this connection, in order
        self.wake = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    def resolve(self, reply: Reply) -> None:
        future = self._waiting.get(reply.sha256)
        if future is not None and not future.done():
            future.set_result(reply)
        else:
            extra = {"agent": self.name, "sha256": reply.sha256}
            log.warning("evidence reply for no upload in progress", extra=extra)

    def next_image(self, now: float | None = None) -> str | None:
        """The next image to send: not rejected on this connection, not waiting for a retry."""
        now = asyncio.get_running_loop().time() if now is None else now
        waiting = {sha for sha, (at, _) in self.later.items() if at > now}
        order = upload_order(self.spool.ring_entries(), frozenset(self.skip | waiting))
        return order[0] if order else None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            sha = self.next_image(now)
            if sha is None:
                due = min((at for at, _ in self.later.values()), default=None)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if due is None else max(due - now, 0.0)):
                        await self.wake.wait()
                self.wake.clear()
                continue
            await self.upload(sha)

    async def upload(self, sha: str) -> Reply | None:
        """Send one spooled image and wait for the server's reply; None if it left the spool meanwhile."""
        found = self.spool.image(sha)
        if found is None:
            return None
        meta, data = found
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[sha] = future
        try:
            for start, end in chunk_offsets(len(data), self.chunk_bytes):
                await self.events_idle()
                header = EvidenceChunk(
                    sha256=sha,
                    kind=meta.kind,
                    purpose=meta.purpose,
                    taken_at=meta.taken_at,
                    size=len(data),
                    offset=start,
                )
                await self.send(encode_evidence_chunk(header, data[start:end]))
                if future.done():  # rejected before the last chunk (too large, out of order)
                    break
            async with asyncio.timeout(self.timeout_s):
                reply = await future
        finally:
            self._waiting.pop(sha, None)
        if isinstance(reply, EvidenceStored):
            self.later.pop(sha, None)
            self.spool.remove_image(sha)
            self.on_reply(True)
            log.debug("evidence uploaded", extra={"agent": self.name, "sha256": sha, "bytes": len(data)})
        elif reply.retry:
            self.rejected.append(reply)
            pause = retry_delay(self.later[sha][1] if sha in self.later else None)
            self.later[sha] = (asyncio.get_running_loop().time() + pause, pause)
            log.info(
                "evidence refused for now; trying again",
                extra={"agent": self.name, "sha256": sha, "code": reply.code, "retry_in_s": pause},
            )
        elif meta.purpose == "enrollment":  # the face gate's verdict is final: do not send it again
            self.later.pop(sha, None)
            self.spool.remove_image(sha)
            self.rejected.append(reply)
            self.on_reply(False)
            log.warning(
                "face image refused by the server; dropped from the spool",
                extra={"agent": self.name, "sha256": sha, "code": reply.code, "why": reply.message},
            )
        else:
            self.skip.add(sha)
            self.rejected.append(reply)
            self.on_reply(False)
            log.warning(
                "evidence rejected; kept in the spool",
                extra={"agent": self.name, "sha256": sha, "code": reply.code, "why": reply.message},
            )
        return reply
