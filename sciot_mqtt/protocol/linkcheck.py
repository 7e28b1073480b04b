"""When a device sends an `echo`, and how large: the rule every device follows (topics.md,
rule 8), pure logic, so that the Python device and the firmware (which implements the same
rule in C, with these constants from the generated header) send the same echoes.

A device checks the link only when the service asks for it (an `offload` predicted slower
than the device's own device-only time) and only within a byte budget: every payload it sends
for users' inferences (`infer`, `timings`) earns `1 / ECHO_SHARE_DIVISOR` of its size, saved
up to `ECHO_CREDIT_CAP` bytes, and an echo costs its own size. So echoes never exceed a tenth
of what users' inferences send (plus the cap, once). Integer arithmetic: both sides agree to
the byte.

Most echoes carry no padding (the link's latency); every `ECHO_LARGE_EVERY`-th one carries
`min(ECHO_LARGE_PADDING, bytes the checked split would send)`, so the service's fit of
latency + bytes / bandwidth sees two sizes. An echo due that the credit cannot pay is not
sent (it stays due); one echo at a time, given up after the result timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

ECHO_SHARE_DIVISOR = 10
"""Echoes may cost 1/10 of the bytes users' inferences send (the default `measure_budget`)."""
ECHO_CREDIT_CAP = 2048
"""Echo bytes a device saves up at most."""
ECHO_LARGE_EVERY = 8
"""Every 8th echo of a connection (the 8th, 16th, ...) is the large one."""
ECHO_LARGE_PADDING = 1024
"""Padding of the large echo at most (bytes)."""


@dataclass
class EchoBudget:
    """A device's echo credit and count; plain integers, reset on every connection."""

    credit: int = 0  # in bytes of users' payloads: an echo of n bytes takes n * divisor
    sent: int = 0  # echoes sent on this connection

    def earn(self, user_bytes: int) -> None:
        """A payload of a user's inference went out."""
        cap = ECHO_CREDIT_CAP * ECHO_SHARE_DIVISOR
        self.credit = min(cap, self.credit + max(user_bytes, 0))

    def padding_due(self, checked_bytes: int) -> int:
        """Padding of the next echo, given the bytes the checked split would send."""
        if self.sent % ECHO_LARGE_EVERY == ECHO_LARGE_EVERY - 1:
            return max(0, min(ECHO_LARGE_PADDING, checked_bytes))
        return 0

    def try_spend(self, echo_bytes: int) -> bool:
        """Pay for an echo of `echo_bytes` (the whole payload) if the credit covers it."""
        cost = echo_bytes * ECHO_SHARE_DIVISOR
        if cost > self.credit:
            return False
        self.credit -= cost
        self.sent += 1
        return True
