"""Reconnect delays: capped exponential backoff with full jitter. Pure."""

from __future__ import annotations


def next_delay(attempt: int, base: float, cap: float, rand: float) -> float:
    """Delay before reconnect ``attempt`` (0 = first retry), in seconds.

    ``rand`` is a uniform number in [0, 1) supplied by the caller (``random.random()``),
    so the function stays pure: the result is ``rand * min(cap, base * 2**attempt)``.
    """
    if attempt < 0:
        raise ValueError(f"attempt: expected >= 0, got {attempt}")
    if base <= 0 or cap < base:
        raise ValueError(f"expected 0 < base <= cap, got base={base} cap={cap}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand: expected a number in [0, 1), got {rand}")
    ceiling = cap if attempt >= 64 else min(cap, base * (2**attempt))
    return rand * ceiling
