"""Link profiles: what a device's network does to its messages, and schedules of them.

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
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sciot_mqtt._specfiles import looks_like_file, number, parse_seconds, read_json
from sciot_mqtt.errors import ConfigurationError

__all__ = [
    "LINK_PROFILES",
    "Direction",
    "LinkProfile",
    "LinkSchedule",
    "load_link_profile",
]

Direction = Literal["up", "down"]

#: Linux's minimum retransmission timeout (TCP_RTO_MIN); RFC 6298 asks for 1 s, but the
#: stacks a device and an edge run use 200 ms.
MIN_RTO_MS = 200.0
#: Consecutive losses of one message counted before giving up on drawing more: past this
#: the stall (63 RTOs) is already far beyond any result timeout.
MAX_RETRANSMISSIONS = 6


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
        check_direction(direction)
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
            "latency_ms": number(data, "latency_ms", where),
            "jitter_ms": number(data, "jitter_ms", where, default=0.0),
            "uplink_kbps": number(data, "uplink_kbps", where, none_is=math.inf),
            "downlink_kbps": number(data, "downlink_kbps", where, none_is=math.inf),
            "loss": number(data, "loss", where, default=0.0),
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
    if looks_like_file(key):
        path = Path(key).expanduser()
        data = read_json(path, "link profile")
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
        if "," not in text and "@" not in text and looks_like_file(text):
            path = Path(text).expanduser()
            data = read_json(path, "link schedule")
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
                at = parse_seconds(at_text, f"link schedule {spec!r}, item {item!r}")
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
            at = number(item, "at_s", where)
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


def check_direction(direction: str) -> None:
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
