"""Does the service still hear what is published to it? It pings itself to find out.

A broker may drop a client's subscriptions while its connection stays up (a session taken
over, a broker bug): the service would go on publishing `stats` yet hear no device. So every
stats interval it publishes a `ping` to its own instance and expects it back through its
subscriptions; when one has not come back within `patience` intervals and nothing else has
arrived since it was sent, it is deaf and must reconnect (and subscribe again). A service
busy with a backlog hears plenty, so a ping stuck behind a flood is not taken for deafness.
Pure logic, no I/O.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from sciot_mqtt.protocol import Ping

SELF_PREFIX = "self-"


class HearingCheck:
    """The service's pings to itself: which are out, and whether one is overdue."""

    def __init__(
        self, interval: float, patience: int = 2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.patience = patience
        self._clock = clock
        self._numbers = itertools.count()
        self._waiting: dict[str, float] = {}  # nonce -> sent at
        self._last_heard = clock()  # when any message last arrived
        self.heard = 0  # own pings that came back

    def ping(self) -> Ping:
        """The next ping to publish to ourselves."""
        nonce = f"{SELF_PREFIX}{next(self._numbers)}"
        self._waiting[nonce] = self._clock()
        return Ping(nonce=nonce)

    def heard_something(self) -> None:
        """Any message arrived through the subscriptions."""
        self._last_heard = self._clock()

    def is_own(self, ping: Ping) -> bool:
        return ping.nonce.startswith(SELF_PREFIX)

    def came_back(self, ping: Ping) -> None:
        """One of our pings arrived: we hear; older ones will not come any more."""
        sent = self._waiting.pop(ping.nonce, None)
        if sent is not None:
            self.heard += 1
            self._waiting = {n: t for n, t in self._waiting.items() if t > sent}

    def deaf(self) -> bool:
        """A ping of ours is overdue (it went out `patience` intervals ago and never came),
        and nothing at all arrived since it was sent."""
        due = self._clock() - self.patience * self.interval
        overdue = [sent for sent in self._waiting.values() if sent < due]
        return bool(overdue) and self._last_heard < max(overdue)

    def reset(self) -> None:
        """A new connection: pings sent on the old one say nothing about it."""
        self._waiting.clear()
