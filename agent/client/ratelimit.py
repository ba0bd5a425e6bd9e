"""TokenBucket: the client agent's RPC rate limit (Consul's --rpc-rate / --rpc-max-burst).

Like Go's ``rate.Limiter`` as Consul uses it: the bucket holds at most
``burst`` tokens and refills at ``rate`` tokens per second; each RPC takes one
token or is refused at once (no waiting). A rate of None or infinity means
no limit at all, Consul's default.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_MAX_BURST", "TokenBucket"]

DEFAULT_MAX_BURST = 1000


class TokenBucket:
    """A token bucket with non-blocking ``allow()``."""

    def __init__(
        self,
        rate: float | None = None,
        burst: int = DEFAULT_MAX_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and (math.isnan(rate) or rate < 0):
            raise ValueError(f"rpc rate must be >= 0 per second, got {rate!r}")
        if burst < 0:
            raise ValueError(f"rpc max burst must be >= 0, got {burst!r}")
        self.rate = math.inf if rate is None else float(rate)
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.rate)

    def allow(self) -> bool:
        """Take one token if there is one; never waits."""
        if self.unlimited:
            return True
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._last, 0.0)
            self._last = now
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def tokens(self) -> float:
        """Tokens available now (for introspection)."""
        if self.unlimited:
            return math.inf
        with self._lock:
            elapsed = max(self._clock() - self._last, 0.0)
            return min(float(self.burst), self._tokens + elapsed * self.rate)
