"""Where each device should cut its model: a per-device cost model. Pure logic, no I/O.

The model predicts the latency of every split point with the cost curve (`costcurve.py`),
from the device's per-operator times and the link fit it learns (`estimates.py`) and the
edge's own times (calibrated, then EMA of measured tails), and decides: the cheapest split,
with hysteresis, or a probe or a link check when measuring could change the decision.
What to measure, and when, is `measuring.py`'s: only what could change the decision, within a
budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sciot_mqtt.protocol import SplitMode
from sciot_mqtt.service.costcurve import best_split, cost_curve
from sciot_mqtt.service.estimates import LinkEstimate, OperatorTimes
from sciot_mqtt.service.measuring import (
    MeasureBudget,
    link_check_could_matter,
    refresh_could_matter,
    switch_margin,
)


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    alpha: float = 0.2  # EMA weight of a new sample
    rel_margin: float = 0.10  # change split only if it saves this fraction of T(current)...
    abs_margin_ms: float = 1.0  # ...and at least this much
    window: int = 10  # per-operator samples kept for the variance test
    cv_threshold: float = 0.15  # coefficient of variation that marks an operator unstable
    min_sd_ms: float = 0.1  # ...if its spread is also this large: sub-0.1 ms jitter moves nothing
    measure_budget: float = 0.1  # share of the device's inference time measuring may cost
    link_window: int = 20  # round-trip samples the link fit uses
    prior_latency_ms: float = 5.0  # link guesses until the device has reported round trips
    prior_kbps: float = 10_000.0


def with_hysteresis(
    curve: Sequence[float],
    bytes_at: Sequence[int],
    current: int | None,
    settings: DecisionSettings,
) -> tuple[int, bool]:
    """(split, changed): keep `current` unless the best one saves enough to be worth it."""
    best = best_split(curve, bytes_at)
    if current is None or not 0 <= current < len(curve):
        return best, True
    gain = curve[current] - curve[best]
    if best != current and gain > max(settings.abs_margin_ms, settings.rel_margin * curve[current]):
        return best, True
    return current, False


@dataclass(frozen=True, slots=True)
class Decision:
    split: int
    mode: SplitMode
    predicted_ms: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Measured:
    """One inference of the device as the service learnt it (ms): offloaded, its round trip
    came with the device's next message; local, the device reported the whole run."""

    split: int
    device_ms: float  # operators [0, split) on the device
    total_ms: float  # device part + round trip, or the device-only run
    link_ms: float | None = None  # offloaded: the round trip minus the service's own time
    service_ms: float | None = None  # offloaded: receive to publish (queue + edge)


@dataclass
class _Sent:
    nbytes: int
    split: int = 0
    head_ms: float = 0.0  # the device's time for operators [0, split)
    service_ms: float | None = None
    echo: bool = False  # a link check's echo: a link sample, no user's inference


class DeviceCostModel:
    """Everything the service knows of one device's timing, and the decision it implies."""

    def __init__(
        self,
        n_ops: int,
        bytes_at: Sequence[int],
        settings: DecisionSettings,
        on_measured: Callable[[Measured], None] | None = None,
    ) -> None:
        """`on_measured` hears of every inference measured (the service's latency stats)."""
        self.n_ops = n_ops
        self.bytes_at = list(bytes_at)
        self.settings = settings
        self.device = OperatorTimes(n_ops, settings.alpha, settings.window)
        self.link = LinkEstimate(settings)
        # The best link fitted so far (latency ms, ms per byte): it may come back.
        self.best_link: tuple[float, float] | None = None
        self.current: Decision | None = None
        self.last_curve: list[float] | None = None
        self.measured: deque[Measured] = deque(maxlen=16)  # the latest, for explanations
        self._on_measured = on_measured
        self.budget = MeasureBudget(settings.measure_budget)
        self._sent: dict[int, _Sent] = {}
        self._since_variance_probe = settings.window
        self._probe_wait = 0
        self._exploring = 0  # decisions left to wait for the exploring request

    # --- observations ---------------------------------------------------------------------

    def on_request(self, seq: int, split: int, device_ms: Sequence[float], nbytes: int) -> None:
        self.device.observe(device_ms, 0)
        self._exploring = 0
        self._remember(seq, nbytes, split, sum(device_ms))
        self._since_variance_probe += 1
        self._earn(split)

    def on_result(self, seq: int, nbytes: int, service_ms: float) -> None:
        sent = self._sent.get(seq)
        if sent is not None:
            sent.nbytes += nbytes
            sent.service_ms = service_ms

    def on_echo(self, seq: int, nbytes: int, service_ms: float) -> None:
        """A link check's echo came in beside local run `seq` (`nbytes` both ways, answered
        in `service_ms`): the check asked for is done; its round trip comes next."""
        self._exploring = 0
        self._sent[seq] = _Sent(nbytes, service_ms=service_ms, echo=True)
        while len(self._sent) > 64:
            self._sent.pop(next(iter(self._sent)))

    def on_round_trip(self, seq: int, rtt_ms: float) -> None:
        """The device's round trip of inference `seq` (or of the echo sent beside it), minus
        our own time for it."""
        sent = self._sent.pop(seq, None)
        if sent is None or sent.service_ms is None:
            return
        link = self.link
        link.observe(sent.nbytes, rtt_ms - sent.service_ms)
        best = self.best_link
        if best is None or link.predict(self.bytes_at[0]) < best[0] + self.bytes_at[0] * best[1]:
            self.best_link = (link.latency_ms, link.ms_per_byte)
        if sent.echo:
            return  # a link sample only: no user's inference to account for
        network_ms = max(0.0, rtt_ms - sent.service_ms)
        total = sent.head_ms + rtt_ms
        self._measure(Measured(sent.split, sent.head_ms, total, network_ms, sent.service_ms))

    def on_local_run(self, device_ms: Sequence[float], *, probe: bool = False) -> None:
        if len(device_ms) == self.n_ops:
            self.device.observe(device_ms, 0, refresh=probe)
            self._since_variance_probe += 1
            run = sum(device_ms)
            self._measure(Measured(self.n_ops, run, run))
            if not probe:
                self._earn(self.n_ops)

    def _earn(self, split: int) -> None:
        """A user's inference ran at `split`: measuring earns its share of the time it took."""
        curve = self.last_curve
        if curve is not None and 0 <= split < len(curve):
            self.budget.earn(curve[split])

    def _measure(self, measured: Measured) -> None:
        self.measured.append(measured)
        if self._on_measured is not None:
            self._on_measured(measured)

    def _remember(self, seq: int, nbytes: int, split: int, head_ms: float) -> None:
        self._sent[seq] = _Sent(nbytes, split, head_ms)
        while len(self._sent) > 64:
            self._sent.pop(next(iter(self._sent)))

    # --- deciding -------------------------------------------------------------------------

    def decide(
        self, edge_ms: Sequence[float], queue_ms: float, *, after_probe: bool = False
    ) -> Decision:
        """The decision for the next inference (it may equal the current one).

        Call it after each observation; `after_probe` when the device's probe run arrived.
        A probe stays in force until then (an inference already under way must not cancel
        it), or for at most 2 x window requests if the probe run never comes.
        """
        previous = self.current
        if self._exploring > 0:
            # The device may start its next run before this decision reaches it: keep it
            # until it offloads once (a few decisions at most).
            self._exploring -= 1
            return previous  # type: ignore[return-value]
        if previous is not None and previous.mode == "probe" and not after_probe:
            self._probe_wait += 1
            if self._probe_wait <= 2 * self.settings.window:
                return previous
        self._probe_wait = 0
        if not self.device.complete:
            return self._set(Decision(self.n_ops, "probe", None, "learning the device's times"))
        curve = cost_curve(
            self.device.values(),
            edge_ms,
            self.bytes_at,
            latency_ms=self.link.latency_ms,
            ms_per_byte=self.link.ms_per_byte,
            queue_ms=queue_ms,
        )
        self.last_curve = curve
        split, _ = with_hysteresis(curve, self.bytes_at, self._last_split, self.settings)
        # Right after a probe no new one: never two in a row.
        if not after_probe and (previous is None or previous.mode != "probe"):
            probe = self._refresh_if_worth_it(curve, split)
            if probe is not None:
                return self._set(probe)
        mode: SplitMode = "local" if split == self.n_ops else "offload"
        if mode == "local" and self.n_ops > 0:
            check = self._link_check_if_worth_it(curve)
            if check is not None:
                self._exploring = 3
                self.current = check
                return check
        return self._set(Decision(split, mode, curve[split], self._reason(curve, split, mode)))

    def _reason(self, curve: Sequence[float], split: int, mode: SplitMode) -> str:
        """Why `split`, from the same curve as the prediction sent with it (so they agree),
        naming the cheaper split that hysteresis passed over, if any."""
        where = "device only" if mode == "local" else ("edge only" if split == 0 else "split")
        best = best_split(curve, self.bytes_at)
        held = ""
        if best != split:
            held = f" (split {best} would take {curve[best]:.1f} ms: too small a gain to move)"
        return (
            f"{where}: {curve[split]:.1f} ms predicted{held}, link {self.link.latency_ms:.1f} ms"
            f" + {self.link.kbps:.0f} kbit/s"
        )

    _last_split: int | None = None

    def _refresh_if_worth_it(self, curve: Sequence[float], split: int) -> Decision | None:
        """A probe, when the operators `split` does not run could change the decision if
        plausibly faster, and the budget pays their device time; at most one per variance
        window of inferences. Unstable operators among them are named in the reason."""
        if split >= self.n_ops:
            return None  # a local device times every operator with every run
        times = self.device.values()
        margin = switch_margin(curve[split], self.settings.rel_margin, self.settings.abs_margin_ms)
        if not refresh_could_matter(curve, times, split, margin):
            return None
        unstable = self.device.unstable(self.settings.cv_threshold, self.settings.min_sd_ms)
        unstable = {i for i in unstable if i >= split}  # ops [0, split) come with each request
        if self._since_variance_probe < self.settings.window:
            return None
        if not self.budget.try_spend(sum(times[split:])):
            return None
        self._since_variance_probe = 0
        if unstable:
            ops = ",".join(str(i) for i in sorted(unstable)[:6])
            return Decision(self.n_ops, "probe", None, f"unstable ops {ops}")
        return Decision(self.n_ops, "probe", None, f"refreshing ops {split}..{self.n_ops - 1}")

    def _link_check_if_worth_it(self, curve: Sequence[float]) -> Decision | None:
        """Local by cost, the link is not measured: check it by offloading once at the best
        offloading split when a plausibly better link (four times better, or as good as the
        best seen) would win and the budget pays what the user's inference may lose by it."""
        n = self.n_ops
        margin = switch_margin(curve[n], self.settings.rel_margin, self.settings.abs_margin_ms)
        link = self.link
        if not link_check_could_matter(
            curve, self.bytes_at, link.latency_ms, link.ms_per_byte, margin, self.best_link
        ):
            return None
        offload = best_split(curve[:n], self.bytes_at[:n])
        if not self.budget.try_spend(curve[offload] - curve[n]):
            return None
        return Decision(
            offload, "offload", curve[offload], "checking the link (device only so far)"
        )

    def _set(self, decision: Decision) -> Decision:
        if decision.mode != "probe":
            self._last_split = decision.split
        self.current = decision
        return decision
