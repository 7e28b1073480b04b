"""The link emulator: delays a device's messages in its own process as a `LinkProfile` would.

Without root, `tc netem` or a second machine: the device awaits `uplink(nbytes)` before a
publish and `downlink(nbytes)` when a result arrives (see `network/link.py` for the model).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sciot_mqtt.network.link import (
    MAX_RETRANSMISSIONS,
    Direction,
    LinkProfile,
    LinkSchedule,
    check_direction,
    load_link_profile,
)

__all__ = ["LinkEmulator", "LinkStats"]


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
        check_direction(direction)
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
