"""In-memory outbox of an agent session. Pure: no I/O.

Every event gets the next per-agent sequence number (1, 2, 3, ...). Two cumulative
watermarks come back from the gateway:

* ``ack`` (:meth:`Outbox.ack`): the events are in the server's event store (Redis). It only
  moves the flow-control window: at most ``window`` events are sent and not yet acked.
* ``stored`` (:meth:`Outbox.release`): the events are committed in the server's database.
  Only then does an event leave the outbox (and the spool).

After a reconnect :meth:`Outbox.rewind` makes every event not yet stored due again, in
order: an event acked but lost with a crashed Redis is sent again, and one stored twice is
kept once by the server (events are deduplicated by tenant and id). With a spool
(:mod:`agent.spool`) the session writes each event there first and builds the outbox from the
spool's unreleased events at start (:meth:`Outbox.restore`), so the outbox is the in-memory
send queue over the durable copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EVENTS_FRAME_HEAD = '{"type":"events","events":['
EVENTS_FRAME_TAIL = "]}"


@dataclass(frozen=True)
class Pending:
    seq: int
    text: str  # the event's JSON, encoded once when it was queued


class Outbox:
    """Queued and in-flight events, oldest first."""

    def __init__(self, first_seq: int = 1) -> None:
        if first_seq < 1:
            raise ValueError(f"first_seq: expected >= 1, got {first_seq}")
        self._items: deque[Pending] = deque()
        self.next_seq = first_seq
        self.stored = first_seq - 1  # highest seq committed in the server's database
        self.acked = first_seq - 1  # highest seq in the server's event store (>= stored)
        self.sent = first_seq - 1  # highest seq sent on the current connection

    @classmethod
    def restore(cls, next_seq: int, stored: int, items: Sequence[Pending]) -> Outbox:
        """An outbox holding a spool's unreleased ``items`` (in seq order) after ``stored``."""
        box = cls(stored + 1)
        box.next_seq = next_seq
        for item in items:
            box.push(item.seq, item.text)
        return box

    def reserve(self, next_seq: int) -> None:
        """Continue numbering at ``next_seq``; only when nothing is queued (a fresh agent)."""
        if not self._items and next_seq > self.next_seq:
            self.next_seq = next_seq
            self.stored = self.acked = self.sent = next_seq - 1

    def renumber(self, first_seq: int, restamp: Callable[[str, int], str]) -> int:
        """Number the queued events from ``first_seq`` on (``restamp``: an event's JSON with a new
        seq), when nothing was ever acked and the queue starts below it: an agent without a spool,
        restarted, whose first events were queued before the server said where its numbering
        stands. Returns how many were renumbered."""
        if not self._items or self.acked > 0 or first_seq <= self._items[0].seq:
            return 0
        items = [Pending(first_seq + i, restamp(p.text, first_seq + i)) for i, p in enumerate(self._items)]
        self._items = deque(items)
        self.next_seq = first_seq + len(items)
        self.stored = self.acked = self.sent = first_seq - 1
        return len(items)

    def __len__(self) -> int:
        return len(self._items)

    def take_seq(self) -> int:
        """Reserve the next sequence number for an event about to be queued."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def push(self, seq: int, text: str) -> None:
        expected = self._items[-1].seq + 1 if self._items else self.stored + 1
        if seq < expected or seq >= self.next_seq:
            raise ValueError(f"seq: expected {expected} (next in order), got {seq}")
        self._items.append(Pending(seq, text))

    @property
    def unsent(self) -> int:
        return (self._items[-1].seq - self.sent) if self._items else 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked

    def next_batch(self, max_events: int, max_bytes: int, window: int) -> list[Pending]:
        """The next events to send (not yet sent on this connection), in order.

        At most ``max_events`` events, whose JSON fits ``max_bytes`` in one frame
        (always at least one event), and no more than ``window`` unacked in flight.
        Marks them sent.
        """
        room = min(max_events, window - self.in_flight)
        if room <= 0 or not self._items:
            return []
        start = max(self.sent + 1 - self._items[0].seq, 0)
        batch = take_batch(self._items, start, room, max_bytes)
        if batch:
            self.sent = batch[-1].seq
        return batch

    def ack(self, seq: int) -> None:
        """The server's event store holds every event up to ``seq``: they leave the window."""
        if seq > self.acked:
            self.acked = min(seq, self.next_seq - 1)
            self.sent = max(self.sent, self.acked)

    def release(self, seq: int) -> int:
        """The database holds every event up to ``seq``: drop them; returns how many were dropped."""
        dropped = 0
        while self._items and self._items[0].seq <= seq:
            self._items.popleft()
            dropped += 1
        if seq > self.stored:
            self.stored = min(seq, self.next_seq - 1)
            self.ack(self.stored)
        return dropped

    def rewind(self) -> None:
        """A new connection: everything not stored is due again (and unacked on this connection)."""
        self.sent = self.acked = self.stored


def take_batch(items: Sequence[Pending], start: int, max_events: int, max_bytes: int) -> list[Pending]:
    """``items[start:]`` cut to the first frame: at most ``max_events`` whose frame fits ``max_bytes``.

    Always at least one event (when any is left), whatever its size. Pure.
    """
    batch: list[Pending] = []
    size = len(EVENTS_FRAME_HEAD) + len(EVENTS_FRAME_TAIL)
    for i in range(start, len(items)):
        item = items[i]
        size += len(item.text.encode()) + (1 if batch else 0)  # "," between events
        if batch and (len(batch) >= max_events or size > max_bytes):
            break
        batch.append(item)
    return batch


def events_frame(batch: list[Pending]) -> str:
    """The ``events`` frame text for ``batch`` (same JSON as encode(Events(...)))."""
    return EVENTS_FRAME_HEAD + ",".join(p.text for p in batch) + EVENTS_FRAME_TAIL
