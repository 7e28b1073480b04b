"""When a device sends an `echo`, and how large: the rule every device follows (topics.md,
rule 8), pure logic, so that the Python device and the firmware (which implements the same
rule in C, with these constants from the generated header) send the same echoes.

A device checks the link only when the service asks for it (an `offload` predicted slower
than the device's own device-only time), one echo at a time (given up after the result
timeout), and only within a byte budget: echoes cost at most `1 / ECHO_SHARE_DIVISOR` of
the bytes it sends for users' inferences (`infer`, `timings` payloads), half of it for
**latency** echoes (no padding) and half for **bandwidth** echoes (padding
`min(ECHO_LARGE_PADDING, bytes the checked split would send)`), so the service's fit of
latency + bytes / bandwidth sees two sizes. Each half is a pot that every user payload of n
bytes credits with n and an echo of b bytes debits with 2 * divisor * b; a pot saves up for
one echo of its kind at most (`ECHO_LATENCY_CAP`, `ECHO_BANDWIDTH_CAP` bytes of echo), so
credit earned while offloading is not spent in a burst later. A bandwidth echo goes when its
pot pays for one, else a latency echo when its pot does, else none. Integer arithmetic: both
sides agree to the byte. A new connection starts with empty pots.
"""

from __future__ import annotations

from dataclasses import dataclass

ECHO_SHARE_DIVISOR = 10
"""Echoes may cost 1/10 of the bytes users' inferences send (the default `measure_budget`)."""
ECHO_LARGE_PADDING = 256
"""Padding of a bandwidth echo at most (bytes): 4 ms at 0.5 Mbit/s, within the budget about
once in 25 inferences of an ESP32-class device running locally."""
ECHO_LATENCY_CAP = 64
"""Bytes of latency echo its pot saves up at most: one echo."""
ECHO_BANDWIDTH_CAP = ECHO_LARGE_PADDING + 64
"""Bytes of bandwidth echo its pot saves up at most: one echo."""


def echo_cost(echo_bytes: int) -> int:
    """What an echo of `echo_bytes` (its whole payload) takes from its pot."""
    return 2 * ECHO_SHARE_DIVISOR * echo_bytes


@dataclass
class EchoBudget:
    """A device's two echo pots (plain integers), for one connection."""

    latency: int = 0
    bandwidth: int = 0

    def earn(self, user_bytes: int) -> None:
        """A payload of a user's inference went out: both pots gain its size."""
        gain = max(user_bytes, 0)
        self.latency = min(echo_cost(ECHO_LATENCY_CAP), self.latency + gain)
        self.bandwidth = min(echo_cost(ECHO_BANDWIDTH_CAP), self.bandwidth + gain)

    @staticmethod
    def large_padding(checked_bytes: int) -> int:
        """Padding of a bandwidth echo, given the bytes the checked split would send."""
        return max(0, min(ECHO_LARGE_PADDING, checked_bytes))

    def pay(self, small_bytes: int, large_bytes: int) -> bool | None:
        """Pay for the echo due, given the sizes of both kinds: True for a bandwidth echo,
        False for a latency echo, None when neither pot covers its kind."""
        if echo_cost(large_bytes) <= self.bandwidth and large_bytes > small_bytes:
            self.bandwidth -= echo_cost(large_bytes)
            return True
        if echo_cost(small_bytes) <= self.latency:
            self.latency -= echo_cost(small_bytes)
            return False
        return None
