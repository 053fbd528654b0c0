"""Keep one bad stream entry from harming the others. Pure: values in, values out.

The stream consumer (:mod:`workers.consumer`) sorts every batch it reads
(:func:`sort_out`) by what each entry is and how often it was delivered
(:func:`route`):

* up to ``max_deliveries``: handed over with the others, in one handler call;
* past ``max_deliveries`` (a previous delivery never got acked: the process was
  killed, or crashed, while handling it): handed over alone, one per handler call,
  so an entry that ends the process cannot take its batch mates with it again;
* past ``FATAL_FACTOR`` x ``max_deliveries``: dead-lettered without handling, since
  it ends the process even alone;
* not a stream event at all (:func:`workers.dead_letter.decode`): dead-lettered.

When the handler raises something that is not one of its named exceptions, the
consumer splits the batch (:func:`halves`) and hands the halves over again, down
to single entries; an entry that fails alone is dead-lettered with
:func:`failed_alone` as its reason, the others are handled and acked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from workers.dead_letter import DeadLetterReason, decode
from workers.handling import Entry, Message

FATAL_FACTOR = 2  # delivered more than this times max_deliveries: dead-lettered unhandled
MAX_REASON_CHARS = 1000  # an exception's message is cut here in a dead-letter reason

Route = Literal["together", "alone"]
TOGETHER: Route = "together"
ALONE: Route = "alone"

T = TypeVar("T")


def route(deliveries: int, max_deliveries: int) -> Route | DeadLetterReason:
    """How an entry delivered ``deliveries`` times is handled: with others, alone, or not at all."""
    if deliveries <= max_deliveries:
        return TOGETHER
    fatal = FATAL_FACTOR * max_deliveries
    if deliveries <= fatal:
        return ALONE
    return DeadLetterReason(
        f"delivered {deliveries} times (limit {max_deliveries}; more than {fatal} means it ends "
        "the process even when handled alone)"
    )


@dataclass(frozen=True)
class Sorted:
    """A batch sorted out: handled together, handled one by one, dead-lettered at once (with why)."""

    together: list[Message] = field(default_factory=list)
    alone: list[Message] = field(default_factory=list)
    dead: list[tuple[Entry, str]] = field(default_factory=list)


def sort_out(batch: Sequence[Entry], max_deliveries: int) -> Sorted:
    """Decode each entry and route it by its deliveries (see the module rules)."""
    out = Sorted()
    for entry in batch:
        decoded = decode(entry.fields)
        if isinstance(decoded, DeadLetterReason):
            out.dead.append((entry, decoded.reason))
            continue
        decided = route(entry.deliveries, max_deliveries)
        if isinstance(decided, DeadLetterReason):
            out.dead.append((entry, decided.reason))
        elif decided == ALONE:
            out.alone.append(Message(entry, decoded))
        else:
            out.together.append(Message(entry, decoded))
    return out


def halves(batch: Sequence[T]) -> tuple[Sequence[T], Sequence[T]]:
    """The batch in two parts of (nearly) equal size, order kept; needs at least two items."""
    if len(batch) < 2:
        raise ValueError(f"expected a batch of at least 2 entries to split, got {len(batch)}")
    middle = len(batch) // 2
    return batch[:middle], batch[middle:]


def describe(exc: BaseException) -> str:
    """``OverflowError: date value out of range`` (module-qualified type unless built in), cut short."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    message = " ".join(str(exc).split())
    text = f"{name}: {message}" if message else name
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def failed_alone(deliveries: int, max_deliveries: int, exc: BaseException) -> str:
    """The dead-letter reason of an entry the handler failed on when it had it alone."""
    what = describe(exc)
    if deliveries > max_deliveries:
        over = f"delivered {deliveries} times (limit {max_deliveries})"
        return f"{over} and the handler failed on it alone: {what}"
    return f"the handler failed on it alone: {what}"
