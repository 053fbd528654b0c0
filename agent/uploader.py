"""Evidence upload over the session: spooled images -> binary chunk frames -> server confirmation.

One image at a time, incident evidence first (:func:`agent.spool.upload_order`). Each image is
cut into chunks of ``chunk_bytes`` (:func:`chunk_offsets`); before every chunk the uploader
waits until no event is waiting to be sent (events first) and for the session's pacer (the
bandwidth budget). After the last chunk it waits for ``evidence_stored`` (then the image
leaves the spool) or ``evidence_rejected`` (the image stays in the spool and is skipped for
the rest of this connection; the next connection tries it again). No reply within
``timeout_s`` ends the session, so the agent reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent.spool import Spool, upload_order
from realtime.protocol import EvidenceChunk, EvidenceRejected, EvidenceStored, encode_evidence_chunk

log = logging.getLogger(__name__)

Reply = EvidenceStored | EvidenceRejected


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
        self.rejected: list[EvidenceRejected] = []
        self.wake = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    def resolve(self, reply: Reply) -> None:
        future = self._waiting.get(reply.sha256)
        if future is not None and not future.done():
            future.set_result(reply)
        else:
            extra = {"agent": self.name, "sha256": reply.sha256}
            log.warning("evidence reply for no upload in progress", extra=extra)

    def next_image(self) -> str | None:
        order = upload_order(self.spool.ring_entries(), frozenset(self.skip))
        return order[0] if order else None

    async def run(self) -> None:
        while True:
            sha = self.next_image()
            if sha is None:
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
            self.spool.remove_image(sha)
            self.on_reply(True)
            log.debug("evidence uploaded", extra={"agent": self.name, "sha256": sha, "bytes": len(data)})
        else:
            self.skip.add(sha)
            self.rejected.append(reply)
            self.on_reply(False)
            log.warning(
                "evidence rejected; kept in the spool",
                extra={"agent": self.name, "sha256": sha, "code": reply.code, "why": reply.message},
            )
        return reply
