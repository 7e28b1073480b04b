"""A token bucket: how many replies the service may send, whatever floods it."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take()` spends one if there is one.

    The service spends one per `cmd rebirth`, `error`, `pong` and `echo_reply`: those answer
    messages anyone on the broker can send (heartbeats of unknown ids, malformed payloads,
    pings, echoes), so without a bound a flood of them would make the service send as many.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()
        self.refused = 0  # takes refused since start

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False
