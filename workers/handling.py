"""The contract between the stream consumer (:mod:`workers.consumer`) and its batch handlers. Pure.

A handler gets a batch of :class:`Message` (decoded; delivered at most ``max_deliveries``
times, or a single entry delivered more often) and steers the consumer by raising one
of the named exceptions: :class:`RetryLater` (transient; the batch is handed over again
after a pause, its entries stay pending), :class:`PoisonEntries` (those entries to the
dead-letter stream with their reasons, the rest acked), :class:`StopConsumer` (stop
now; the batch stays pending).

Anything else a handler raises means "something in this batch breaks me": the consumer
splits the batch in halves and hands them over again, down to single entries
(:mod:`workers.isolation`); an entry that fails alone goes to the dead-letter stream
with the exception's type and message, the others are handled and acked, and the
consumer goes on. So a handler must be idempotent: an entry may be handed over again
after its batch failed (Redis connection errors count as :class:`RetryLater`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from realtime.protocol import StreamEvent
from workers.dead_letter import RawFields

EntryKey = tuple[str, str]  # (stream, entry id): what names an entry across tenant streams

# ------------------------------------------------------------ named exceptions


class RetryLater(Exception):
    """Transient failure (database unavailable): hand the same batch over again after a pause."""


class PoisonEntries(Exception):
    """These entries (:attr:`Entry.key` -> reason) are poison; the rest of the batch was handled.

    Each one goes to the dead-letter stream with its reason and is acked; so are the others.
    Keyed by stream and entry id: two tenant streams may hold entries of the same id.
    """

    def __init__(self, reasons: Mapping[EntryKey, str]) -> None:
        super().__init__(f"{len(reasons)} poison entr{'y' if len(reasons) == 1 else 'ies'}")
        self.reasons = dict(reasons)


class StopConsumer(Exception):
    """Stop the consumer cleanly now; the batch in hand stays pending (re-read at the next start)."""


# ------------------------------------------------------------ handler contract


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: where from, its raw fields, how often it was delivered."""

    stream: str
    entry_id: str
    fields: RawFields
    deliveries: int

    @property
    def key(self) -> EntryKey:
        """(stream, entry id): unique in a batch that spans tenant streams."""
        return (self.stream, self.entry_id)


@dataclass(frozen=True, slots=True)
class Message:
    """An entry that decoded to a :class:`StreamEvent` and is within its delivery limit."""

    entry: Entry
    event: StreamEvent


class BatchHandler(Protocol):
    """What a batch of decoded entries means; raises the named exceptions above to steer the loop."""

    async def handle(self, batch: Sequence[Message]) -> None:
        """Handle (and commit) the whole batch; return only once its effects are durable."""
        ...

    def counts(self) -> Mapping[str, int]:
        """The handler's own totals, for the consumer's progress and stop lines."""
        ...


@dataclass(frozen=True)
class Periodic:
    """A hook run between batches every ``every_s`` (first at start); may raise the named exceptions."""

    name: str
    every_s: float
    run: Callable[[], Awaitable[None]]
