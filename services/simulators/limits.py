"""Tradecloud's server-side rate limit (pure; the clock is passed in).

"No more than 10 requests per second" (api-facts §2.6) is a sustained rate: a
token bucket per user holding one second's worth. (Apicbase's sliding-window
throttle lives in its simulator's app.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` requests per second per key, bursts up to ``rate``."""

    rate: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, now: float) -> float | None:
        """None when allowed, else the seconds until the next token."""
        tokens, last = self._buckets.get(key, (self.rate, now))
        tokens = min(self.rate, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        return None
