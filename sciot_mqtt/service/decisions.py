"""Where each device should cut its model: a per-device cost model. Pure logic, no I/O.

Predicted latency of split point s (the device runs operators [0, s)):

    T(s) = device[0, s) + link latency + bytes(s) / bandwidth + edge queue + edge[s, N)   s < N
    T(N) = device[0, N)                                                               (local)

Device times are EMAs of what the device reports per operator; edge times are the service's
own (calibrated, then EMA of measured tails); the link is fitted from round trips the device
measures itself (no clock is shared), net of the service's own time for that request.
What to measure, and when, is `measuring.py`'s: only what could change the decision, within a
budget.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sciot_mqtt.protocol import SplitMode
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


@dataclass(frozen=True, slots=True)
class CurveParts:
    """T(s) for s in 0..N in its parts (ms): what the device, the link, the edge's queue and
    the edge each take. `totals()` is the cost curve."""

    device: list[float]
    link: list[float]
    queue: list[float]
    edge: list[float]

    def totals(self) -> list[float]:
        return [
            d + lk + q + e
            for d, lk, q, e in zip(self.device, self.link, self.queue, self.edge, strict=True)
        ]


def curve_parts(
    device_ms: Sequence[float],
    edge_ms: Sequence[float],
    bytes_at: Sequence[int],
    *,
    latency_ms: float,
    ms_per_byte: float,
    queue_ms: float = 0.0,
) -> CurveParts:
    """The parts of T(s) for s in 0..N (see the module docstring)."""
    n = len(device_ms)
    if len(edge_ms) != n or len(bytes_at) != n + 1:
        raise ValueError("need N device times, N edge times and N + 1 byte counts")
    head = [0.0]
    for t in device_ms:
        head.append(head[-1] + t)
    tail = [0.0] * (n + 1)
    for s in range(n - 1, -1, -1):
        tail[s] = tail[s + 1] + edge_ms[s]
    link = [latency_ms + bytes_at[s] * ms_per_byte for s in range(n)] + [0.0]
    queue = [queue_ms] * n + [0.0]
    return CurveParts(head, link, queue, tail)


def cost_curve(
    device_ms: Sequence[float],
    edge_ms: Sequence[float],
    bytes_at: Sequence[int],
    *,
    latency_ms: float,
    ms_per_byte: float,
    queue_ms: float = 0.0,
) -> list[float]:
    """T(s) for s in 0..N (see the module docstring)."""
    parts = curve_parts(
        device_ms,
        edge_ms,
        bytes_at,
        latency_ms=latency_ms,
        ms_per_byte=ms_per_byte,
        queue_ms=queue_ms,
    )
    return parts.totals()


def best_split(curve: Sequence[float], bytes_at: Sequence[int]) -> int:
    """The cheapest split; ties go to fewer bytes on the wire, then to the later split."""
    return min(range(len(curve)), key=lambda s: (round(curve[s], 9), bytes_at[s], -s))


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


class OperatorTimes:
    """Per-operator EMA plus a sliding window for the variance test."""

    def __init__(self, n_ops: int, alpha: float, window: int) -> None:
        self.alpha = alpha
        self.ema: list[float | None] = [None] * n_ops
        self.samples: list[deque[float]] = [deque(maxlen=window) for _ in range(n_ops)]

    def observe(self, times_ms: Sequence[float], start: int = 0, *, refresh: bool = False) -> None:
        """Blend new times in; with `refresh` (a probe), an operator whose time moved by more
        than half is reset to the new value instead of being blended towards it slowly."""
        for offset, value in enumerate(times_ms):
            i = start + offset
            if not 0 <= i < len(self.ema) or not math.isfinite(value) or value < 0:
                continue
            current = self.ema[i]
            if current is None or (refresh and abs(value - current) > 0.5 * max(current, 1e-3)):
                self.ema[i] = value
                self.samples[i].clear()
            else:
                self.ema[i] = current + self.alpha * (value - current)
            self.samples[i].append(value)

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self.ema)

    def values(self) -> list[float]:
        return [v if v is not None else 0.0 for v in self.ema]

    def unstable(self, threshold: float, min_sd_ms: float = 0.0, min_samples: int = 3) -> set[int]:
        """Operators whose times vary more than `threshold` (CV) and `min_sd_ms`, each with
        the next one."""
        marked: set[int] = set()
        for i, window in enumerate(self.samples):
            if len(window) < min_samples:
                continue
            mean = sum(window) / len(window)
            if mean <= 0:
                continue
            sd = math.sqrt(sum((x - mean) ** 2 for x in window) / (len(window) - 1))
            if sd / mean > threshold and sd > min_sd_ms:
                marked.update({i, i + 1} & set(range(len(self.samples))))
        return marked


@dataclass
class LinkEstimate:
    """time = latency + bytes / bandwidth, fitted to the device's own round-trip reports."""

    settings: DecisionSettings
    latency_ms: float = 0.0
    ms_per_byte: float = 0.0
    samples: deque[tuple[int, float]] = field(default_factory=deque)
    observed: int = 0

    def __post_init__(self) -> None:
        self.latency_ms = self.settings.prior_latency_ms
        self.ms_per_byte = 8.0 / self.settings.prior_kbps  # kbit/s = bit/ms
        self.samples = deque(maxlen=self.settings.link_window)

    @property
    def kbps(self) -> float:
        return 8.0 / self.ms_per_byte if self.ms_per_byte > 0 else math.inf

    def observe(self, nbytes: int, network_ms: float) -> None:
        if not math.isfinite(network_ms) or network_ms < 0 or nbytes <= 0:
            return
        expected = self.predict(nbytes)
        # A sample far off the fit means the link changed (a handover, congestion): what was
        # learnt before describes another link, so start over from this sample.
        # Only once a fit stands on a few samples: before that, misses are the prior's fault;
        # and only for a size the fit has seen (within 1.5x of its samples): a fit of one
        # size cannot tell latency from bandwidth, and a sample of another size (a link
        # check's echo beside 10 KB requests) is what tells them apart, not a change.
        sizes = [b for b, _ in self.samples]
        seen = bool(sizes) and min(sizes) / 1.5 <= nbytes <= 1.5 * max(sizes)
        step = (
            len(self.samples) >= 3
            and seen
            and abs(network_ms - expected) > max(0.5 * expected, 5.0)
        )
        if step:
            self.samples.clear()
        self.samples.append((nbytes, network_ms))
        self.observed += 1
        latency, per_byte = self._fit()
        a = 1.0 if step or self.observed == 1 else self.settings.alpha
        self.latency_ms += a * (latency - self.latency_ms)
        self.ms_per_byte += a * (per_byte - self.ms_per_byte)

    def predict(self, nbytes: int) -> float:
        return self.latency_ms + nbytes * self.ms_per_byte

    def _fit(self) -> tuple[float, float]:
        recent = list(self.samples)[-max(3, self.settings.link_window // 2) :]
        xs = [float(b) for b, _ in recent]
        ys = [t for _, t in recent]
        n = len(recent)
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        var_x = sum((x - mean_x) ** 2 for x in xs)
        if n >= 3 and max(xs) > 1.5 * min(xs) and var_x > 0:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var_x
            slope = max(slope, 1e-7)
            intercept = max(0.0, mean_y - slope * mean_x)
            return intercept, slope
        # One payload size only: bandwidth is not identifiable; keep it, refit the latency.
        slope = self.ms_per_byte
        return max(0.0, mean_y - slope * mean_x), slope


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
