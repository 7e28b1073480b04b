"""When measuring is worth it: which measurement could change a device's decision, and the
budget that pays for it. Pure logic, no I/O; used by the cost model (`decisions.py`).

Two things go stale while a device follows its split s:

- the times of operators [s, N), which it no longer runs (ops [0, s) come with every request);
  a **refresh** (a `probe` decision) measures them;
- the link, when the device is kept local and sends nothing over it; a **link check** (one
  inference offloaded at the best offloading split) measures it.

A measurement is requested only when what it could reveal, within plausible bounds, would
change the decision (otherwise it is worth nothing), and only when the budget can pay for it:
the budget earns `share` of every inference's predicted latency (a proxy for the device's
busy time) and pays the predicted device time of a refresh, or the extra latency a link check
adds to the user's inference over the device-only run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# How much better than estimated things may plausibly have become since last measured: an
# operator twice as fast (the cost model resets an operator that moved by more than half),
# a link four times better (a congested link recovering, a handover to a better cell), or
# as good as the best link the device has had.
PLAUSIBLE_OP_SPEEDUP = 0.5
PLAUSIBLE_LINK_GAIN = 4.0
CREDIT_CAP_INFERENCES = 40  # the budget saves up at most this many inferences' worth


def switch_margin(current_ms: float, rel_margin: float, abs_margin_ms: float) -> float:
    """How much a split must save over the current one for the hysteresis to move to it."""
    return max(abs_margin_ms, rel_margin * current_ms)


def refresh_could_matter(
    curve: Sequence[float], device_ms: Sequence[float], split: int, margin_ms: float
) -> bool:
    """Could operators [split, N), were they plausibly faster, make a later split win?"""
    n = len(device_ms)
    saved = 0.0
    for later in range(split + 1, n + 1):
        saved += PLAUSIBLE_OP_SPEEDUP * device_ms[later - 1]
        if curve[later] - saved < curve[split] - margin_ms:
            return True
    return False


def link_check_could_matter(
    curve: Sequence[float],
    bytes_at: Sequence[int],
    latency_ms: float,
    ms_per_byte: float,
    margin_ms: float,
    best_seen: tuple[float, float] | None = None,
) -> bool:
    """Could a plausibly better link make an offloading split beat device-only (the last
    point of `curve`)? Plausible: four times better, or as good as the best seen (latency,
    ms per byte), whichever is better."""
    n = len(curve) - 1
    for s in range(n):
        link_now = latency_ms + bytes_at[s] * ms_per_byte
        hoped = link_now / PLAUSIBLE_LINK_GAIN
        if best_seen is not None:
            hoped = min(hoped, best_seen[0] + bytes_at[s] * best_seen[1])
        if curve[s] - link_now + hoped < curve[n] - margin_ms:
            return True
    return False


@dataclass
class MeasureBudget:
    """Milliseconds of measuring earned and not yet spent (plain numbers: serialisable)."""

    share: float
    credit_ms: float = 0.0
    earned_ms: float = 0.0  # all earned and spent so far, for reports
    spent_ms: float = 0.0

    def earn(self, inference_ms: float) -> None:
        if inference_ms > 0:
            self.earned_ms += self.share * inference_ms
            cap = CREDIT_CAP_INFERENCES * self.share * inference_ms
            self.credit_ms = min(self.credit_ms + self.share * inference_ms, max(cap, 0.0))

    def try_spend(self, cost_ms: float) -> bool:
        """Pay `cost_ms` if the credit covers it."""
        cost = max(cost_ms, 0.0)
        if cost > self.credit_ms:
            return False
        self.credit_ms -= cost
        self.spent_ms += cost
        return True
