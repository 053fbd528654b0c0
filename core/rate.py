"""A token bucket: the one definition of "at most ``rate`` per second, bursts up to ``burst``". Pure.

Used by the agent to pace image uploads (bytes, :class:`agent.bandwidth.Pacer`) and by the
gateway to pace reading a session's frames (one token per frame): the caller waits the
returned seconds before going on, so nothing is dropped; the waiting is the limit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    tokens: float  # what may go now (negative: debt from traffic taken without waiting)
    at: float  # monotonic time of ``tokens``


def take_tokens(bucket: Bucket, cost: float, now: float, rate: float, burst: float) -> tuple[Bucket, float]:
    """Refill ``bucket`` to ``now`` and take ``cost``: (new bucket, seconds to wait first).

    The wait is how long until the refilled tokens cover ``cost`` (0 when they already do);
    the returned bucket already has them taken, as of the end of the wait. A cost above the
    burst waits for a full bucket. A clock that went back refills nothing.
    """
    if rate <= 0 or burst <= 0:
        raise ValueError(f"expected rate > 0 and burst > 0, got rate={rate} burst={burst}")
    start = max(now, bucket.at)  # a bucket "as of" the future: an earlier taker is still waiting
    tokens = min(burst, bucket.tokens + (now - bucket.at) * rate) if now > bucket.at else bucket.tokens
    need = min(cost, burst)
    refill = max(0.0, (need - tokens) / rate)
    return Bucket(tokens + refill * rate - cost, start + refill), start + refill - now
