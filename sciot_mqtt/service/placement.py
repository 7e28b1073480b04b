"""Where a fleet places a device: rendezvous hashing and the three policies. Pure logic.

Every instance runs the same functions over the same view of the fleet (`fleetview.py`), so
they agree on who decides for a device (its *home*, the rendezvous winner among the
instances taking devices) and, for `hash`, on where it goes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sciot_mqtt.protocol import Birth, Placement, Tier

_SPAN = float(2**64)


@dataclass
class Member:
    """One service instance as the fleet sees it: its retained `state` and its `stats` load."""

    name: str
    online: bool = False
    started_at: float | None = None
    capacity: float = 1.0
    tier: Tier = "edge"
    placement: Placement = "hash"
    models: tuple[str, ...] | None = None  # None: not announced, taken to serve any model
    draining: bool = False
    queue: float = 0.0  # inferences in flight, mean over its last stats interval
    served: int = 0  # devices whose claim names it and that are online (from the claims)

    @property
    def eligible(self) -> bool:
        """It takes devices: online and not handing its own over."""
        return self.online and not self.draining

    @property
    def load(self) -> float:
        """Inferences in flight per unit of capacity."""
        return self.queue / self.capacity

    def model_for(self, birth: Birth) -> str | None:
        """The model it would assign a device announcing `birth` (its first served one)."""
        if self.models is None:
            return birth.models[0]
        return next((m for m in self.models if m in birth.models), None)


def rendezvous_score(device_id: str, member: str, weight: float) -> float:
    """Weighted highest-random-weight score (the logarithmic method): each member wins a
    share of the devices proportional to its weight, and adding or removing a member moves
    only the devices it wins or held."""
    digest = hashlib.blake2b(f"{member}\x00{device_id}".encode(), digest_size=8).digest()
    uniform = (int.from_bytes(digest, "big") + 0.5) / _SPAN  # in (0, 1)
    return -weight / math.log(uniform)


def ranked(device_id: str, members: Iterable[Member]) -> list[Member]:
    """Members by their rendezvous score for `device_id`, best first (ties by name)."""
    return sorted(
        members,
        key=lambda m: (-rendezvous_score(device_id, m.name, m.capacity), m.name),
    )


class FleetState(Protocol):
    """What a policy reads of the fleet."""

    def eligible(self) -> list[Member]: ...

    def online_devices(self) -> int: ...


LOAD_BOUND = 0.0
"""`hash`: an instance takes at most (1 + this) times its weighted share of the online
devices, rounded up; a device whose hash winner is full goes to its next choice (consistent
hashing with bounded loads, Mirrokni et al. 2018), so a few dozen devices spread by weight,
not by luck. 0: the share itself, the fewest moves when an instance joins (a looser bound
leaves room that pulls devices between the old instances)."""


def bound(member: Member, serving: Sequence[Member], devices: int) -> int:
    """Most devices `member` takes among `serving` with `devices` online."""
    weights = sum(m.capacity for m in serving)
    return math.ceil((1 + LOAD_BOUND) * max(devices, 1) * member.capacity / weights)


def _least_loaded(candidates: Sequence[Member]) -> Member | None:
    """The shortest queue per capacity (in steps of half a request, so that equal queues
    are equal), then the fewest devices per capacity, then the name."""
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda m: (round(m.load * 2) / 2, m.served / m.capacity, m.name),
    )


class PlacementPolicy(Protocol):
    @property
    def name(self) -> Placement: ...

    def keeps(self, fleet: FleetState, device_id: str, birth: Birth | None, owner: Member) -> bool:
        """Whether the device stays with `owner`, an eligible instance serving it now."""
        ...

    def choose(self, fleet: FleetState, device_id: str, birth: Birth) -> Member | None:
        """Where a new or moving device goes (None: no eligible instance serves its models)."""
        ...


def _serving(fleet: FleetState, birth: Birth) -> list[Member]:
    return [m for m in fleet.eligible() if m.model_for(birth) is not None]


@dataclass(frozen=True)
class HashPlacement:
    """Rendezvous hashing weighted by capacity, with bounded loads: a device lives on the
    first instance of its ranking that has room (`LOAD_BOUND`)."""

    name: Placement = "hash"

    def keeps(self, fleet: FleetState, device_id: str, birth: Birth | None, owner: Member) -> bool:
        """It stays while its owner is within bound and no instance it prefers has room."""
        # Without its birth (an instance that joined after it), its models are unknown:
        # judged among every instance; a move then asks for its birth first.
        serving = _serving(fleet, birth) if birth is not None else fleet.eligible()
        devices = fleet.online_devices()
        for member in ranked(device_id, serving):
            if member.name == owner.name:
                return member.served <= bound(member, serving, devices)
            if member.served + 1 <= bound(member, serving, devices):
                return False  # an instance it hashes to before its owner has room
        return False  # its owner does not serve its models any more

    def choose(self, fleet: FleetState, device_id: str, birth: Birth) -> Member | None:
        serving = _serving(fleet, birth)
        candidates = ranked(device_id, serving)
        devices = fleet.online_devices()
        for member in candidates:
            if member.served + 1 <= bound(member, serving, devices):
                return member
        return candidates[0] if candidates else None


@dataclass(frozen=True)
class LeastLoadedPlacement:
    """New and moving devices go to the shortest queue; placed devices stay."""

    name: Placement = "least-loaded"

    def keeps(self, fleet: FleetState, device_id: str, birth: Birth | None, owner: Member) -> bool:
        return True

    def choose(self, fleet: FleetState, device_id: str, birth: Birth) -> Member | None:
        return _least_loaded(_serving(fleet, birth))


@dataclass(frozen=True)
class TieredPlacement:
    """Edge first; when every edge instance is above `high` (requests in flight per unit of
    capacity), the cloud tier (EdgeCam's Shortest-Cloud-Threshold). Devices move between
    tiers in `fleet.py`'s rebalancing, with hysteresis: back to the edge only below `low`."""

    high: float = 4.0
    low: float = 1.0
    name: Placement = "tiered"

    def keeps(self, fleet: FleetState, device_id: str, birth: Birth | None, owner: Member) -> bool:
        return True

    def choose(self, fleet: FleetState, device_id: str, birth: Birth) -> Member | None:
        serving = _serving(fleet, birth)
        edges = [m for m in serving if m.tier == "edge"]
        clouds = [m for m in serving if m.tier == "cloud"]
        with_room = [m for m in edges if m.load <= self.high]
        if with_room:
            return _least_loaded(with_room)
        return _least_loaded(clouds) or _least_loaded(edges)

    def all_edges_busy(self, fleet: FleetState) -> bool:
        edges = [m for m in fleet.eligible() if m.tier == "edge"]
        return bool(edges) and all(m.load > self.high for m in edges)

    def edges_with_room(self, fleet: FleetState) -> list[Member]:
        return [m for m in fleet.eligible() if m.tier == "edge" and m.load < self.low]


def make_policy(
    name: Placement, *, tier_high: float = 4.0, tier_low: float = 1.0
) -> PlacementPolicy:
    if name == "hash":
        return HashPlacement()
    if name == "least-loaded":
        return LeastLoadedPlacement()
    return TieredPlacement(high=tier_high, low=tier_low)
