"""What a service instance of a fleet does about the devices of its broker. Pure logic, no I/O.

It decides on the view every instance keeps alike (`fleetview.py`: membership, load, and of
every device its owner -- the instance its claim names, while online -- and its home -- the
rendezvous winner among the instances taking devices); the **policy** (`placement.py`) says
whether a device stays with its owner and where it goes.

The instance that serves a device answers its birth; the home places a device without an
owner (answering itself, or publishing the `assign` naming the instance it chose, which
adopts it). The service (`service.py`) feeds messages in and carries out the `Action`s.
topics.md, "Fleet", gives the rules and the races they settle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sciot_mqtt.protocol import Assign, Birth
from sciot_mqtt.service.fleetview import DeviceView, FleetView
from sciot_mqtt.service.placement import Member, PlacementPolicy, TieredPlacement


@dataclass(frozen=True, slots=True)
class Place:
    """Serve the device on `instance`: this one answers its birth; another is named in an
    `assign` published for it (it adopts the device on seeing it)."""

    device_id: str
    instance: str
    birth: Birth
    why: str


@dataclass(frozen=True, slots=True)
class Rebirth:
    """Its birth of the current session is unknown here: ask the device for it."""

    device_id: str
    why: str


@dataclass(frozen=True, slots=True)
class Release:
    """Another instance serves it now: stop serving it (answer what is still under way)."""

    device_id: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """No instance of the fleet serves any of its models."""

    device_id: str
    birth: Birth


Action = Place | Rebirth | Release | Refuse


class LoadMeter:
    """Mean of a sampled quantity (inferences in flight) between two reads."""

    def __init__(self) -> None:
        self._sum = 0.0
        self._count = 0
        self._last = 0.0

    def sample(self, value: float) -> None:
        self._sum += value
        self._count += 1
        self._last = value

    def take(self) -> float:
        mean = self._sum / self._count if self._count else self._last
        self._sum, self._count = 0.0, 0
        return mean


class Fleet(FleetView):
    """The fleet as this instance sees it (`FleetView`), and what this instance should do
    about it."""

    def __init__(
        self,
        me: Member,
        policy: PlacementPolicy,
        *,
        retry_after: float = 1.0,
        tier_cooldown: float = 2.0,
        max_views: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`retry_after`: seconds before this instance places the same device or asks for its
        birth again; `tier_cooldown`: seconds between two tier moves it decides (loads need
        a stats interval or two to show the last move)."""
        super().__init__(me, max_views=max_views, clock=clock)
        self.policy = policy
        self.retry_after = retry_after
        self.tier_cooldown = tier_cooldown
        # Devices this instance answered on its current connection: id -> birth session.
        self.held: dict[str, int] = {}
        # False until the retained messages of a new connection are in (a ping to itself
        # came back): before that the view is partial, so nothing is placed.
        self.settled = False
        self._last_tier_move = -math.inf

    # --- what the broker says -------------------------------------------------------------

    def on_birth(self, device_id: str, birth: Birth) -> Action | None:
        """A birth (of a supported protocol): answer it here, place it, or leave it."""
        view = self._record_birth(device_id, birth)
        if not self.settled:
            return None
        owner = self.owner(device_id)
        if (
            owner is not None
            and owner.eligible
            and self.policy.keeps(self, device_id, birth, owner)
        ):
            if owner is self.me:
                return Place(device_id, self.me.name, birth, "served here")
            return None
        if self.home(device_id) != self.me.name:
            return None
        return self._choose(device_id, view, birth, "new device" if owner is None else "moved")

    def on_claim(self, device_id: str, assign: Assign) -> Action | None:
        """An `assign` (retained or live): the instance it names serves the device now."""
        view = self._record_claim(device_id, assign.instance, assign.session)
        if assign.instance != self.me.name:
            self.held.pop(device_id, None)
            return Release(device_id)  # (nothing to do if this instance never served it)
        if self.held.get(device_id) == assign.session or not self.settled:
            return None  # our own, heard back; or the settling sweep sees to it
        # Named here, not answered on this connection: placed here by another instance, or
        # ours from before a restart or reconnect (the device waits for a fresh answer).
        return self._adopt(device_id, view, "placed here")

    # --- this instance's own doings -------------------------------------------------------

    def refused(self, device_id: str, birth: Birth) -> None:
        """This instance refused the device's birth: do not place that session again."""
        view = self.devices.get(device_id)
        if view is not None:
            view.refused_session = birth.session

    def new_connection(self) -> None:
        """Connected (again): the devices want fresh answers, and the view settles anew."""
        self.held.clear()
        self.settled = False

    def settle(self) -> list[Action]:
        self.settled = True
        return self.sweep()

    def answered(self, device_id: str, session: int) -> None:
        """This instance answered the device's birth of `session` with its own `assign`."""
        self.held[device_id] = session
        self._record_claim(device_id, self.me.name, session)

    def placed(self, device_id: str, instance: str, session: int) -> None:
        """This instance published an `assign` naming `instance` for the device."""
        self._record_claim(device_id, instance, session)
        self.held.pop(device_id, None)

    # --- deciding -------------------------------------------------------------------------

    def sweep(self) -> list[Action]:
        """What this instance should do now for the devices it serves or is home of: answer
        those named here, place those left without an owner (a will, a draining owner) or,
        for `hash`, living elsewhere than they hash to; for `tiered`, move between tiers."""
        if not self.settled:
            return []
        try:
            return self._sweep()
        finally:
            self._placing.clear()

    def _sweep(self) -> list[Action]:
        now = self.clock()
        actions: list[Action] = []
        for device_id, view in self.devices.items():
            if not view.online or now - view.acted_at < self.retry_after:
                continue
            owner = self.owner(device_id)
            birth = self.current_birth(device_id)
            if birth is None and now - view.state_at < self.retry_after:
                continue  # a device just connected: its birth is on the way
            if birth is not None and view.refused_session == birth.session:
                continue
            if owner is self.me and owner.eligible:
                if self.held.get(device_id) != view.session:
                    action = self._adopt(device_id, view, "served here")
                    if action is not None:
                        actions.append(action)
                continue
            if (
                owner is not None
                and owner.eligible
                and self.policy.keeps(self, device_id, birth, owner)
            ):
                continue
            if self.home(device_id) != self.me.name:
                continue
            if birth is None:
                view.acted_at = now
                actions.append(Rebirth(device_id, "its instance is gone"))
                continue
            action = self._choose(device_id, view, birth, "its instance is gone or moved")
            if isinstance(action, Place) and not (
                owner is not None and action.instance == owner.name
            ):
                actions.append(action)
                self._placing[action.instance] += 1
        if isinstance(self.policy, TieredPlacement):
            actions.extend(self._between_tiers(self.policy, now))
        return actions

    def _adopt(self, device_id: str, view: DeviceView, why: str) -> Action | None:
        view.acted_at = self.clock()
        birth = self.current_birth(device_id)
        if birth is not None:
            return Place(device_id, self.me.name, birth, why)
        if view.online:
            return Rebirth(device_id, "served by this instance now")
        return None

    def _choose(self, device_id: str, view: DeviceView, birth: Birth, why: str) -> Action:
        view.acted_at = self.clock()
        target = self.policy.choose(self, device_id, birth)
        if target is None:
            return Refuse(device_id, birth)
        return Place(device_id, target.name, birth, why)

    def _between_tiers(self, policy: TieredPlacement, now: float) -> list[Action]:
        """At most one device per cooldown, of those this instance is home of: to the cloud
        while every edge instance is above `high`, back to the edge below `low`."""
        if now - self._last_tier_move < self.tier_cooldown:
            return []
        if policy.all_edges_busy(self):
            source, targets = "edge", [m for m in self.eligible() if m.tier == "cloud"]
            why = "every edge instance is busy"
        else:
            source, targets = "cloud", policy.edges_with_room(self)
            why = "the edge has room again"
        if not targets:
            return []
        candidates = []
        for device_id, view in self.devices.items():
            owner = self.owner(device_id)
            birth = self.current_birth(device_id)
            if (
                owner is None
                or not owner.eligible
                or owner.tier != source
                or birth is None
                or now - view.moved_at < 2 * self.tier_cooldown  # no flapping back at once
                or self.home(device_id) != self.me.name
            ):
                continue
            candidates.append((-owner.load, device_id, view, birth))
        for _, device_id, view, birth in sorted(candidates, key=lambda c: c[:2]):
            serving = [m for m in targets if m.model_for(birth) is not None]
            if not serving:
                continue
            target = min(serving, key=lambda m: (m.load, m.served / m.capacity, m.name))
            self._last_tier_move = now
            view.acted_at = now
            return [Place(device_id, target.name, birth, why)]
        return []
