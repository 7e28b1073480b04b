"""Emulated links and device compute, so the Python device can stand in for a real one.

The Python device runs on a fast host and talks to the broker over loopback: every split
point looks cheap, and nothing a split decision has to weigh (a slow radio, a slow
microcontroller, a link that changes under it) shows up. This module adds those costs back in
the device process itself, without root, ``tc netem`` or a second machine:

* ``LinkEmulator`` delays what the device sends (``await uplink(nbytes)`` before a publish)
  and what it receives (``await downlink(nbytes)`` when a result arrives) as a named or
  custom ``LinkProfile`` would, switchable while running by a ``LinkSchedule``.
* ``ComputeEmulator`` tells the device's compute thread how long each operator should take
  (``op_seconds``), so it can wait out the difference: at real speed (``host``), or as on the
  ESP32-S3 the reference profile was measured on (``esp32s3``, scaled by a factor), with the
  static, gaussian, uniform or exponential delays of SCIoT's delay simulation.

## Link profiles

| profile | one-way latency (ms) | jitter (ms) | uplink | downlink | loss | stands for |
|---|---|---|---|---|---|---|
| `loopback` | 0 | 0 | unlimited | unlimited | 0 | no emulation (the default) |
| `5g` | 10 | 3 | 50 Mbit/s | 150 Mbit/s | 0 | 5G mid-band, edge server near the core |
| `wifi` | 3 | 1.5 | 20 Mbit/s | 30 Mbit/s | 0 | 802.11n 2.4 GHz, one access point, good signal |
| `lte` | 25 | 8 | 5 Mbit/s | 20 Mbit/s | 0 | LTE, typical urban cell |
| `congested` | 60 | 30 | 0.5 Mbit/s | 1 Mbit/s | 1 % | busy shared link, full buffers |
| `lossy` | 3 | 1.5 | 20 Mbit/s | 30 Mbit/s | 3 % | `wifi` with interference (only loss differs) |

The figures are typical values from published ranges, not measurements of any one network:
crowd-sourced and operator reports of median LTE and 5G throughput and latency (uplink is
the narrow direction on both), the TCP throughput Espressif publishes for ESP32-class Wi-Fi
and common 802.11n home setups, and the delays seen on shared, congested links. Latency is
one way (device to broker or back), so a round trip is about twice it.

How one message of ``nbytes`` is delayed, per direction:

1. **Serialization**: ``nbytes * 8 / kbps`` milliseconds, through a FIFO: a message starts
   when the previous one in the same direction has left, so back-to-back messages queue.
2. **Propagation**: a gamma draw with mean ``latency_ms`` and standard deviation
   ``jitter_ms``. Unlike a normal clipped at zero it is never negative and has the long
   right tail queueing delays have; ``latency_ms`` is the mean, not a floor.
3. **Loss**: with probability ``loss`` the message needs a TCP retransmission and stalls
   one retransmission timeout, ``rto_ms = max(200, 2 * latency_ms + 4 * jitter_ms)`` (RFC
   6298's SRTT + 4 RTTVAR, with the round trip for SRTT and the jitter for RTTVAR, floored at
   Linux's 200 ms minimum). A retransmission lost again doubles the wait (exponential
   backoff), up to 6 retransmissions. ``loss`` is per message, not per packet.
4. **In order**: MQTT runs over TCP, so a message never arrives before the one sent before
   it in the same direction; a stall holds back what follows (head-of-line blocking).

A custom profile is a ``.json`` file with the fields of ``LinkProfile``::

    {"latency_ms": 40, "jitter_ms": 10, "uplink_kbps": 2000, "downlink_kbps": 8000,
     "loss": 0.005}

(``name`` defaults to the file name; ``jitter_ms`` and ``loss`` to 0; a bandwidth of
``null`` is unlimited). A schedule switches profiles at seconds since the emulator started:
``"wifi@0,lte@30,congested@60"``, or a ``.json`` file with a list of
``{"at_s": 30, "profile": "lte"}`` (``profile`` a name, a path relative to the file, or the
fields inline). The last profile stays in force.

## Compute profiles

``host`` runs at the host's real speed (it takes a distribution, for noise around the
measured time, but no scale factor). ``esp32s3`` makes operator ``i`` take
``package.ops[i].reference_ms``: the time the reference profile measured on an ESP32-S3
for the Keras layers that operator fuses. A spec adds, each optional and in this order, a
scale factor, a distribution and a spread: ``esp32s3:0.2`` (5 times faster than measured),
``esp32s3:0.2:gaussian:0.1``, ``esp32s3:uniform:0.05``. The spread is relative to the mean
``m``: ``gaussian`` draws with standard deviation ``spread * m``, ``uniform`` between
``m * (1 - spread)`` and ``m * (1 + spread)``, ``exponential`` ``m * (1 - spread)`` plus an
exponential of mean ``spread * m`` (spread 1, the default for it, is SCIoT's plain
exponential of mean ``m``), ``static`` always ``m``. Without a spread, gaussian and uniform
use 0.1. Draws are clipped at zero, and an operator never takes less than it really took. A
custom profile is a ``.json`` file: ``{"per_op_ms": [...], "distribution": "gaussian",
"spread": 0.05}`` with one time per deployed operator (and an optional ``scale``);
``profile.json:0.5`` scales it.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.reference import load_reference_profiles

__all__ = [
    "DISTRIBUTIONS",
    "LINK_PROFILES",
    "ComputeEmulator",
    "ComputeProfile",
    "Direction",
    "Distribution",
    "LinkEmulator",
    "LinkProfile",
    "LinkSchedule",
    "LinkStats",
    "load_compute_profile",
    "load_link_profile",
]

Direction = Literal["up", "down"]
Distribution = Literal["static", "gaussian", "uniform", "exponential"]
DISTRIBUTIONS: tuple[Distribution, ...] = get_args(Distribution)

#: Linux's minimum retransmission timeout (TCP_RTO_MIN); RFC 6298 asks for 1 s, but the
#: stacks a device and an edge run use 200 ms.
MIN_RTO_MS = 200.0
#: Consecutive losses of one message counted before giving up on drawing more: past this
#: the stall (63 RTOs) is already far beyond any result timeout.
MAX_RETRANSMISSIONS = 6
#: Spread used when a distribution is named without one.
_DEFAULT_SPREAD: dict[Distribution, float] = {
    "static": 0.0,
    "gaussian": 0.1,
    "uniform": 0.1,
    "exponential": 1.0,
}


# -- link profiles -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """A link as the device sees it: delay, its spread, bandwidth each way, and loss.

    ``latency_ms`` is the mean one-way delay and ``jitter_ms`` its standard deviation;
    bandwidths are in kbit/s (1000 bit/s), ``math.inf`` for unlimited; ``loss`` is the
    probability that a message needs a TCP retransmission (see the module docstring).
    """

    name: str
    latency_ms: float
    jitter_ms: float
    uplink_kbps: float
    downlink_kbps: float
    loss: float

    def __post_init__(self) -> None:
        where = f"link profile {self.name!r}"
        if not self.name:
            raise ConfigurationError("a link profile needs a name")
        for label, value in (("latency_ms", self.latency_ms), ("jitter_ms", self.jitter_ms)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{where}: {label} must be >= 0, got {value}")
        if self.jitter_ms > 0 and self.latency_ms == 0:
            raise ConfigurationError(
                f"{where}: jitter_ms needs a latency_ms above 0 "
                "(it is the spread of the one-way delay around its mean)"
            )
        for label, value in (
            ("uplink_kbps", self.uplink_kbps),
            ("downlink_kbps", self.downlink_kbps),
        ):
            if math.isnan(value) or value <= 0:
                raise ConfigurationError(
                    f"{where}: {label} must be > 0 (or unlimited), got {value}"
                )
        if not 0 <= self.loss < 1:
            raise ConfigurationError(f"{where}: loss must be in [0, 1), got {self.loss}")

    @property
    def is_loopback(self) -> bool:
        """True when the profile delays nothing, so the device can skip emulation."""
        return (
            self.latency_ms == 0
            and self.jitter_ms == 0
            and math.isinf(self.uplink_kbps)
            and math.isinf(self.downlink_kbps)
            and self.loss == 0
        )

    @property
    def rto_ms(self) -> float:
        """The retransmission timeout a lost message waits (RFC 6298, Linux floor)."""
        return max(MIN_RTO_MS, 2 * self.latency_ms + 4 * self.jitter_ms)

    def kbps(self, direction: Direction) -> float:
        _check_direction(direction)
        return self.uplink_kbps if direction == "up" else self.downlink_kbps

    def serialization_ms(self, direction: Direction, nbytes: int) -> float:
        """Time to put ``nbytes`` on the link: bits over kbit/s is milliseconds."""
        kbps = self.kbps(direction)
        return 0.0 if math.isinf(kbps) else nbytes * 8 / kbps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (unlimited bandwidth as ``None``: JSON has no infinity)."""
        return {
            "name": self.name,
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "uplink_kbps": None if math.isinf(self.uplink_kbps) else self.uplink_kbps,
            "downlink_kbps": None if math.isinf(self.downlink_kbps) else self.downlink_kbps,
            "loss": self.loss,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str, where: str) -> LinkProfile:
        """Fields from a JSON object; ``name`` is used when the object has none.

        Unknown keys are errors, so a typo (``latency`` for ``latency_ms``) does not
        silently leave a field at its default.
        """
        required = ("latency_ms", "uplink_kbps", "downlink_kbps")
        known = {"name", "jitter_ms", "loss", *required}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown link profile field(s) {unknown}; known: {sorted(known)}"
            )
        missing = [k for k in required if k not in data]
        if missing:
            raise ConfigurationError(f"{where}: missing link profile field(s) {missing}")
        raw_name = data.get("name", name)
        if not isinstance(raw_name, str) or not raw_name:
            raise ConfigurationError(f"{where}: name must be a non-empty string")
        values = {
            "latency_ms": _number(data, "latency_ms", where),
            "jitter_ms": _number(data, "jitter_ms", where, default=0.0),
            "uplink_kbps": _number(data, "uplink_kbps", where, none_is=math.inf),
            "downlink_kbps": _number(data, "downlink_kbps", where, none_is=math.inf),
            "loss": _number(data, "loss", where, default=0.0),
        }
        try:
            return cls(name=raw_name, **values)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None


def _mbps(value: float) -> float:
    return value * 1000.0


#: The named link profiles; figures and sources in the module docstring.
LINK_PROFILES: dict[str, LinkProfile] = {
    p.name: p
    for p in (
        LinkProfile("loopback", 0.0, 0.0, math.inf, math.inf, 0.0),
        LinkProfile("5g", 10.0, 3.0, _mbps(50), _mbps(150), 0.0),
        LinkProfile("wifi", 3.0, 1.5, _mbps(20), _mbps(30), 0.0),
        LinkProfile("lte", 25.0, 8.0, _mbps(5), _mbps(20), 0.0),
        LinkProfile("congested", 60.0, 30.0, _mbps(0.5), _mbps(1), 0.01),
        LinkProfile("lossy", 3.0, 1.5, _mbps(20), _mbps(30), 0.03),
    )
}

_LINK_FIELDS_HINT = "latency_ms, jitter_ms, uplink_kbps, downlink_kbps, loss"


def load_link_profile(spec: str) -> LinkProfile:
    """A named profile (case-insensitive), or one read from a ``.json`` file."""
    key = spec.strip()
    named = LINK_PROFILES.get(key.lower())
    if named is not None:
        return named
    if _looks_like_file(key):
        path = Path(key).expanduser()
        data = _read_json(path, "link profile")
        if isinstance(data, list):
            raise ConfigurationError(
                f"{path} holds a schedule (a list), not one link profile; "
                "use it where a schedule is expected"
            )
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"{path}: a link profile is a JSON object with {_LINK_FIELDS_HINT}"
            )
        return LinkProfile.from_dict(data, name=path.stem, where=str(path))
    raise ConfigurationError(
        f"unknown link profile {spec!r}: use one of {', '.join(LINK_PROFILES)}, "
        f"or a path to a .json file with {_LINK_FIELDS_HINT}"
    )


# -- schedules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkSchedule:
    """Which profile holds when: ``(at_s, profile)`` pairs, from 0 s, in time order.

    Time is seconds since the emulator started; each profile holds until the next one,
    the last for good.
    """

    entries: tuple[tuple[float, LinkProfile], ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ConfigurationError("a link schedule needs at least one profile")
        times = [at for at, _ in self.entries]
        for at in times:
            if not (math.isfinite(at) and at >= 0):
                raise ConfigurationError(f"link schedule: time {at} s is not a time >= 0")
        if times[0] != 0:
            raise ConfigurationError(
                f"link schedule: the first profile must start at 0 s, not {times[0]:g} s"
            )
        for before, after in itertools.pairwise(times):
            if after == before:
                raise ConfigurationError(f"link schedule: two profiles at {after:g} s")
            if after < before:
                raise ConfigurationError("link schedule: entries must be in time order")

    @classmethod
    def constant(cls, profile: LinkProfile) -> LinkSchedule:
        return cls(((0.0, profile),))

    @classmethod
    def parse(cls, spec: str) -> LinkSchedule:
        """``"wifi"``, ``"wifi@0,lte@30,congested@60"`` or a ``.json`` file.

        An item without ``@`` starts at 0; items may come in any order; a profile may be
        a path to a ``.json`` profile. A ``.json`` file holding one object is a constant
        schedule of that profile; one holding a list is a schedule.
        """
        text = spec.strip()
        if not text:
            raise ConfigurationError("empty link schedule: give a profile name, e.g. wifi")
        if "," not in text and "@" not in text and _looks_like_file(text):
            path = Path(text).expanduser()
            data = _read_json(path, "link schedule")
            if isinstance(data, list):
                return cls._from_list(data, path)
            return cls.constant(load_link_profile(text))
        entries: list[tuple[float, LinkProfile]] = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                raise ConfigurationError(f"link schedule {spec!r}: empty item")
            name, sep, at_text = item.rpartition("@")
            if not sep:
                name, at = item, 0.0
            else:
                at = _parse_seconds(at_text, f"link schedule {spec!r}, item {item!r}")
            entries.append((at, load_link_profile(name)))
        entries.sort(key=lambda e: e[0])
        return cls(tuple(entries))

    @classmethod
    def _from_list(cls, data: list[Any], path: Path) -> LinkSchedule:
        entries: list[tuple[float, LinkProfile]] = []
        for k, item in enumerate(data):
            where = f"{path}, entry {k}"
            if not isinstance(item, dict) or set(item) != {"at_s", "profile"}:
                raise ConfigurationError(
                    f'{where}: each entry is {{"at_s": SECONDS, "profile": NAME, PATH or '
                    f"{{fields}}}}, got {item!r}"
                )
            at = _number(item, "at_s", where)
            raw = item["profile"]
            if isinstance(raw, dict):
                profile = LinkProfile.from_dict(raw, name=f"{path.stem}[{k}]", where=where)
            elif isinstance(raw, str):
                ref = Path(raw.strip()).expanduser()
                if ref.suffix.lower() == ".json" and not ref.is_absolute():
                    raw = str(path.parent / ref)  # relative to the schedule file
                profile = load_link_profile(raw)
            else:
                raise ConfigurationError(f"{where}: profile must be a name, a path or an object")
            entries.append((at, profile))
        entries.sort(key=lambda e: e[0])
        try:
            return cls(tuple(entries))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc}") from None

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(at for at, _ in self.entries)

    def profile_at(self, elapsed_s: float) -> LinkProfile:
        """The profile in force ``elapsed_s`` seconds after the start (the first before)."""
        k = bisect.bisect_right(self.times, elapsed_s) - 1
        return self.entries[max(k, 0)][1]

    def __str__(self) -> str:
        return ",".join(f"{p.name}@{at:g}" for at, p in self.entries)


# -- link emulator -----------------------------------------------------------------------


@dataclass(slots=True)
class LinkStats:
    """What one direction of the link did, for the device's summary."""

    messages: int = 0
    bytes: int = 0
    delay_s: float = 0.0  # summed emulated delay
    retransmissions: int = 0  # loss stalls (each consecutive loss of a message counts)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "delay_s": round(self.delay_s, 6),
            "retransmissions": self.retransmissions,
        }


@dataclass(slots=True)
class _Lane:
    """The FIFO state and random stream of one direction."""

    rng: np.random.Generator
    busy_until: float = -math.inf  # when the last message finishes serializing
    last_arrival: float = -math.inf  # when the last message arrives (TCP keeps order)
    stats: LinkStats = field(default_factory=LinkStats)


class LinkEmulator:
    """Delays the device's messages as its link would (see the module docstring).

    Call it from the event loop only: it keeps per-direction queue state without a lock.
    The clock is injectable so the queueing arithmetic can be tested without sleeping.
    Schedule time counts from ``start``, the clock at construction; set ``start`` again to
    begin the schedule later (say, at the first inference).
    """

    def __init__(
        self,
        link: LinkSchedule | LinkProfile | str,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(link, str):
            link = LinkSchedule.parse(link)
        elif isinstance(link, LinkProfile):
            link = LinkSchedule.constant(link)
        self.schedule = link
        self._clock = clock
        self.start = clock()
        self._override: LinkProfile | None = None
        # One stream per direction: the uplink draws do not depend on how many downlink
        # messages came in between, which keeps seeded runs comparable.
        up, down = np.random.SeedSequence(seed).spawn(2)
        self._lanes: dict[Direction, _Lane] = {
            "up": _Lane(np.random.default_rng(up)),
            "down": _Lane(np.random.default_rng(down)),
        }

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.start

    @property
    def profile(self) -> LinkProfile:
        """The profile in force now: the override if one was set, else the schedule's."""
        if self._override is not None:
            return self._override
        return self.schedule.profile_at(self.elapsed_s)

    @property
    def stats(self) -> dict[Direction, LinkStats]:
        return {d: lane.stats for d, lane in self._lanes.items()}

    def set_profile(self, profile: LinkProfile | str) -> None:
        """Switch to ``profile`` now; the schedule no longer applies from here on."""
        self._override = load_link_profile(profile) if isinstance(profile, str) else profile

    def delay_s(self, direction: Direction, nbytes: int) -> float:
        """Seconds a message of ``nbytes`` sent now takes to arrive; reserves the link.

        Deterministic for a seed and a sequence of calls and clock readings: this is all
        of the emulation except the sleep.
        """
        _check_direction(direction)
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        profile = self.profile
        lane = self._lanes[direction]
        now = self._clock()
        sent = max(now, lane.busy_until) + profile.serialization_ms(direction, nbytes) / 1000
        lane.busy_until = sent
        one_way_s = _one_way_ms(profile, lane.rng) / 1000
        retransmissions = _retransmissions(profile.loss, lane.rng)
        stall_s = profile.rto_ms * ((1 << retransmissions) - 1) / 1000
        arrival = max(sent + one_way_s + stall_s, lane.last_arrival)
        lane.last_arrival = arrival
        delay = arrival - now
        lane.stats.messages += 1
        lane.stats.bytes += nbytes
        lane.stats.delay_s += delay
        lane.stats.retransmissions += retransmissions
        return delay

    async def uplink(self, nbytes: int) -> float:
        """Sleep as long as sending ``nbytes`` to the broker takes; returns the delay."""
        return await self._transfer("up", nbytes)

    async def downlink(self, nbytes: int) -> float:
        """Sleep as long as receiving ``nbytes`` from the broker takes; returns the delay."""
        return await self._transfer("down", nbytes)

    async def _transfer(self, direction: Direction, nbytes: int) -> float:
        delay = self.delay_s(direction, nbytes)
        if delay > 0:
            await asyncio.sleep(delay)
        return delay


def _one_way_ms(profile: LinkProfile, rng: np.random.Generator) -> float:
    """Gamma with mean latency and standard deviation jitter: never negative."""
    mean, sd = profile.latency_ms, profile.jitter_ms
    if sd == 0:
        return mean
    shape = (mean / sd) ** 2
    return float(rng.gamma(shape, sd * sd / mean))


def _retransmissions(loss: float, rng: np.random.Generator) -> int:
    """How many times in a row a message is lost (each attempt lost with ``loss``)."""
    count = 0
    # Always one draw, so a loss-free profile consumes the stream like a lossy one.
    while rng.random() < loss and count < MAX_RETRANSMISSIONS:
        count += 1
    return count


def _check_direction(direction: str) -> None:
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")


# -- compute profiles --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComputeProfile:
    """How long the device's operators take: real speed, or given per-operator times.

    ``per_op_ms`` is ``None`` for the host's real speed, else one mean time per deployed
    operator; ``spread`` is relative to that mean (see the module docstring).
    """

    name: str
    per_op_ms: tuple[float, ...] | None
    distribution: Distribution = "static"
    spread: float = 0.0

    def __post_init__(self) -> None:
        where = f"compute profile {self.name!r}"
        if not self.name:
            raise ConfigurationError("a compute profile needs a name")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigurationError(
                f"{where}: distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                f"got {self.distribution!r}"
            )
        if not (math.isfinite(self.spread) and self.spread >= 0):
            raise ConfigurationError(f"{where}: spread must be >= 0, got {self.spread}")
        if self.per_op_ms is not None:
            if not self.per_op_ms:
                raise ConfigurationError(f"{where}: per_op_ms is empty")
            bad = [v for v in self.per_op_ms if not (math.isfinite(v) and v >= 0)]
            if bad:
                raise ConfigurationError(f"{where}: per-op times must be >= 0, got {bad}")

    @property
    def is_host(self) -> bool:
        return self.per_op_ms is None


def _reference_devices() -> dict[str, str]:
    """Reference profile id -> the device it was measured on (e.g. ``esp32s3``)."""
    return {p.id: p.device for p in load_reference_profiles()}


def load_compute_profile(spec: str, package: ModelPackage) -> ComputeProfile:
    """``host``, a reference device (``esp32s3``) or a ``.json`` file, plus modifiers.

    Modifiers follow the name after ``:``, each optional, in this order: a scale factor,
    a distribution, a spread (``esp32s3:0.2:gaussian:0.1``).
    """
    text = spec.strip()
    head, *rest = text.split(":")
    head = head.strip()
    scale, distribution, spread = _parse_modifiers(rest, spec)
    if head.lower() == "host":
        if scale != 1.0:
            raise ConfigurationError(
                f"compute profile {spec!r}: host runs at the host's real speed and takes no "
                "scale factor"
            )
        dist = distribution or "static"
        return ComputeProfile(
            text, None, dist, spread if spread is not None else _DEFAULT_SPREAD[dist]
        )
    devices = sorted(set(_reference_devices().values()))
    if head.lower() in devices:
        per_op = _reference_times(head.lower(), package)
        base_dist: Distribution = "static"
        base_spread = 0.0
        name = text
    elif _looks_like_file(head):
        path = Path(head).expanduser()
        per_op, base_dist, base_spread, file_name = _read_compute_file(path)
        name = file_name if not rest else f"{file_name}:{':'.join(rest)}"
        if len(per_op) != package.num_ops:
            raise ConfigurationError(
                f"{path}: per_op_ms has {len(per_op)} times but model {package.model_id!r} "
                f"has {package.num_ops} operators; give one time per deployed operator"
            )
    else:
        names = ", ".join(["host", *devices])
        raise ConfigurationError(
            f"unknown compute profile {spec!r}: use one of {names} (optionally "
            "NAME:SCALE[:DISTRIBUTION[:SPREAD]]), or a path to a .json file with per_op_ms"
        )
    if distribution is not None:
        dist = distribution
        final_spread = spread if spread is not None else _DEFAULT_SPREAD[distribution]
    else:
        dist = base_dist
        final_spread = spread if spread is not None else base_spread
    return ComputeProfile(name, tuple(v * scale for v in per_op), dist, final_spread)


def _reference_times(device: str, package: ModelPackage) -> tuple[float, ...]:
    missing = [op.index for op in package.ops if op.reference_ms is None]
    if package.reference is None or missing:
        raise ConfigurationError(
            f"compute profile {device!r}: model {package.model_id!r} has no {device} "
            "reference times mapped onto its operators"
            + (f" (none for ops {missing})" if package.reference is not None else "")
            + "; use host, or a .json file with per_op_ms"
        )
    measured_on = _reference_devices().get(package.reference)
    if measured_on != device:
        raise ConfigurationError(
            f"compute profile {device!r}: model {package.model_id!r} has reference times "
            f"from {measured_on or package.reference!r}, not {device}"
        )
    return tuple(float(op.reference_ms or 0.0) for op in package.ops)


def _parse_modifiers(
    parts: list[str], spec: str
) -> tuple[float, Distribution | None, float | None]:
    """``[SCALE][:DISTRIBUTION[:SPREAD]]`` after the profile name."""
    where = f"compute profile {spec!r}"
    items = [p.strip() for p in parts]
    scale = 1.0
    distribution: Distribution | None = None
    spread: float | None = None
    if items and items[0] not in DISTRIBUTIONS:
        scale = _parse_float(items.pop(0), where, "scale factor")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"{where}: the scale factor must be > 0, got {scale}")
    if items:
        distribution = _distribution(items.pop(0), where)
    if items:
        spread = _parse_float(items.pop(0), where, "spread")
        if not (math.isfinite(spread) and spread >= 0):
            raise ConfigurationError(f"{where}: the spread must be >= 0, got {spread}")
    if items:
        raise ConfigurationError(
            f"{where}: too many parts; the form is NAME[:SCALE][:DISTRIBUTION[:SPREAD]]"
        )
    return scale, distribution, spread


def _read_compute_file(path: Path) -> tuple[tuple[float, ...], Distribution, float, str]:
    data = _read_json(path, "compute profile")
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigurationError(
            f'{where}: a compute profile is a JSON object {{"per_op_ms": [...]}}'
        )
    known = {"name", "per_op_ms", "distribution", "spread", "scale"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown compute profile field(s) {unknown}; known: {sorted(known)}"
        )
    raw = data.get("per_op_ms")
    if not isinstance(raw, list) or not raw:
        raise ConfigurationError(f"{where}: per_op_ms must be a non-empty list of milliseconds")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        raise ConfigurationError(f"{where}: per_op_ms must hold numbers only")
    scale = _number(data, "scale", where, default=1.0)
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigurationError(f"{where}: scale must be > 0, got {scale}")
    dist = _distribution(data.get("distribution", "static"), where)
    spread = _number(data, "spread", where, default=_DEFAULT_SPREAD[dist])
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: name must be a non-empty string")
    return tuple(float(v) * scale for v in raw), dist, spread, name


# -- compute emulator --------------------------------------------------------------------


class ComputeEmulator:
    """How long each operator should take under a profile; the device sleeps the rest.

    ``op_seconds`` is called from the device's compute thread while ``set_scale`` may come
    from the event loop, so the random stream sits behind a lock.
    """

    def __init__(self, profile: ComputeProfile, *, seed: int = 0) -> None:
        self.profile = profile
        #: Operator index -> extra relative spread added to the profile's for that operator
        #: (a static profile turns gaussian there), to make one operator's timing unstable.
        self.noisy_ops: dict[int, float] = {}
        self._scale = 1.0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def scale(self) -> float:
        return self._scale

    def set_scale(self, factor: float) -> None:
        """Multiply every operator's mean time by ``factor`` from now on (1.0 = as loaded).

        With ``host`` a factor above 1 slows the real speed down; below 1 it has no effect,
        since no operator takes less than it really took.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor must be > 0, got {factor}")
        self._scale = float(factor)

    def mean_seconds(self, index: int, measured_s: float) -> float:
        """Operator ``index``'s mean time under the profile and scale, before noise."""
        per_op = self.profile.per_op_ms
        if per_op is None:
            return max(measured_s, 0.0) * self._scale
        if not 0 <= index < len(per_op):
            raise IndexError(
                f"op {index} outside the compute profile's 0..{len(per_op) - 1} operators"
            )
        return per_op[index] / 1000 * self._scale

    def op_seconds(self, index: int, measured_s: float) -> float:
        """How long operator ``index`` should take in all; never less than ``measured_s``."""
        measured_s = max(measured_s, 0.0)
        mean = self.mean_seconds(index, measured_s)
        extra = self.noisy_ops.get(index, 0.0)
        if extra < 0:
            raise ValueError(f"noisy_ops[{index}] must be >= 0, got {extra}")
        distribution = self.profile.distribution
        spread = self.profile.spread + extra
        if extra > 0 and distribution == "static":
            distribution = "gaussian"
        with self._lock:
            drawn = _draw(distribution, mean, spread, self._rng)
        return max(drawn, measured_s)


def _draw(
    distribution: Distribution, mean: float, spread: float, rng: np.random.Generator
) -> float:
    """One draw with the given mean and relative spread, clipped at zero."""
    if distribution == "static" or spread == 0 or mean == 0:
        return mean
    if distribution == "gaussian":
        value = rng.normal(mean, spread * mean)
    elif distribution == "uniform":
        value = rng.uniform(mean * (1 - spread), mean * (1 + spread))
    else:  # exponential: shifted so the mean stays `mean` and the deviation is spread*mean
        value = mean * (1 - spread) + rng.exponential(spread * mean)
    return max(float(value), 0.0)


# -- shared helpers ----------------------------------------------------------------------


def _looks_like_file(spec: str) -> bool:
    return spec.lower().endswith(".json") or Path(spec).expanduser().is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} file {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{what} file {path} is not valid JSON: {exc}") from None


def _number(
    data: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: float | None = None,
    none_is: float | None = None,
) -> float:
    """``data[key]`` as a float, with clear errors; ``None`` maps to ``none_is`` if given."""
    if key not in data:
        if default is None:
            raise ConfigurationError(f"{where}: missing {key}")
        return default
    value = data[key]
    if value is None and none_is is not None:
        return none_is
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _distribution(value: object, where: str) -> Distribution:
    for name in DISTRIBUTIONS:
        if value == name:
            return name
    raise ConfigurationError(
        f"{where}: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {value!r}"
    )


def _parse_float(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{where}: {text!r} is not a {what}") from None


def _parse_seconds(text: str, where: str) -> float:
    value = _parse_float(text.strip().removesuffix("s"), where, "time in seconds")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigurationError(f"{where}: the time must be >= 0 seconds, got {text!r}")
    return value
