"""What a push source may send: a rate per source, and each signed request answered once."""

from __future__ import annotations

import time
from collections.abc import Callable

from store.push_sources import PushSource

#: Seconds a signature's time may differ from the platform's clock.
REPLAY_WINDOW_S = 300


class RateLimits:
    """A token bucket per source: ``rate_per_s`` readings a second, a second's burst."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, source: PushSource, readings: int) -> float:
        """0 when ``readings`` may pass (and are taken), else seconds until they may. A
        batch larger than a second's worth passes when the bucket is full and leaves it
        in debt, so the source's average stays within its rate."""
        now = self.clock()
        key = (source.city, source.name)
        tokens, at = self.buckets.get(key, (source.rate_per_s, now))
        tokens = min(source.rate_per_s, tokens + (now - at) * source.rate_per_s)
        need = min(float(readings), source.rate_per_s)
        if tokens >= need:
            self.buckets[key] = (tokens - readings, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (need - tokens) / source.rate_per_s


class Replays:
    """Signatures of requests answered within the replay window: each is answered once
    (a request refused with 429 or 503 is not answered yet: the same one may come again)."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S) -> None:
        self.window_s = window_s
        self.seen: dict[str, float] = {}
        self._pruned = 0.0

    def answered(self, signature: str, now: float) -> bool:
        if now - self._pruned > 10:
            self.seen = {s: t for s, t in self.seen.items() if t > now - 2 * self.window_s}
            self._pruned = now
        return signature in self.seen

    def remember(self, signature: str, now: float) -> None:
        self.seen[signature] = now
