"""A fleet of service instances sharing the devices of one broker. Pure logic, no I/O.

Every instance keeps the same view, built from what the broker tells all of them alike:
the instances' retained `state` and wills (membership), their `stats` (load), and of every
device its retained `state`, its `birth`, and its retained `assign` -- the *claim*: the
instance an `assign` names serves the device, and the latest `assign` wins. From that view:

- a device's **owner** is the instance its claim names, while that instance is online;
- its **home** is the rendezvous winner among the instances taking devices (online, not
  draining): the one instance that places it when it has no owner to stay with;
- the **policy** (`placement.py`) says whether it stays with its owner and where it goes.

The instance that serves a device answers its birth; the home places a device without an
owner (answering itself, or publishing the `assign` naming the instance it chose, which
adopts it). The service (`service.py`) feeds messages in and carries out the `Action`s.
topics.md, "Fleet", gives the rules and the races they settle.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sciot_mqtt.protocol import Assign, Birth, DeviceState, ServiceState, SplitDecision
from sciot_mqtt.service.placement import Member, PlacementPolicy, TieredPlacement, ranked
from sciot_mqtt.service.registry import session_is_newer


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


@dataclass
class DeviceView:
    """One device as every instance sees it."""

    online: bool = False
    session: int | None = None  # from its state (or birth): the current connection
    state_at: float = -math.inf  # when its current session was first heard
    birth: Birth | None = None  # the latest birth heard
    claim: str | None = None  # the instance its latest `assign` names
    claim_session: int | None = None
    moved_at: float = -math.inf  # when its claim last named another instance
    acted_at: float = -math.inf  # when this instance last placed it or asked for its birth
    decision: SplitDecision | None = None  # its latest `split`, whoever published it
    snapshot: bytes | None = None  # its latest retained `snapshot`, raw
    # The birth session this instance refused (full, no model): not placed again until the
    # device announces itself anew, or every sweep would answer it with the same error.
    refused_session: int | None = None


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


class Fleet:
    """The fleet as this instance sees it, and what this instance should do about it."""

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
        self.me = me
        self.policy = policy
        self.retry_after = retry_after
        self.tier_cooldown = tier_cooldown
        self.clock = clock
        # Views are kept for every device id heard, so a flood of new ids must not grow them
        # without bound (as the registry's `max_devices` bounds records): past this many,
        # the views of offline devices are forgotten, the longest known first.
        self.max_views = max_views
        self.members: dict[str, Member] = {me.name: me}
        self.devices: dict[str, DeviceView] = {}
        # Devices this instance answered on its current connection: id -> birth session.
        self.held: dict[str, int] = {}
        # False until the retained messages of a new connection are in (a ping to itself
        # came back): before that the view is partial, so nothing is placed.
        self.settled = False
        self._served: Counter[str] = Counter()  # online devices by the instance claiming them
        self._online = 0  # online devices
        self._homes: dict[str, str | None] = {}  # cache, cleared when membership changes
        self._last_tier_move = -math.inf
        # Devices a sweep placed on each instance so far, counted until the sweep ends (its
        # actions are carried out after it): without them one sweep placing several devices
        # would see the same counts for each and could fill an instance past its bound.
        self._placing: Counter[str] = Counter()

    # --- the view -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.me.name

    def refused(self, device_id: str, birth: Birth) -> None:
        """This instance refused the device's birth: do not place that session again."""
        view = self.devices.get(device_id)
        if view is not None:
            view.refused_session = birth.session

    def view(self, device_id: str) -> DeviceView:
        found = self.devices.get(device_id)
        if found is None:
            if len(self.devices) >= self.max_views:
                self._forget_one()
            found = self.devices[device_id] = DeviceView()
        return found

    def _forget_one(self) -> None:
        """Make room for a new view: the oldest offline device's (online ones are bounded by
        the broker's connections, and the counts of online devices stay exact)."""
        gone = next((d for d, view in self.devices.items() if not view.online), None)
        if gone is not None:
            del self.devices[gone]
            self._homes.pop(gone, None)

    def eligible(self) -> list[Member]:
        """The instances taking devices, with what each serves now."""
        out = [m for m in self.members.values() if m.eligible]
        for member in out:
            member.served = self._served.get(member.name, 0) + self._placing[member.name]
        return out

    def others_eligible(self) -> bool:
        """Whether another instance could take this one's devices."""
        return any(m.eligible for m in self.members.values() if m is not self.me)

    def home(self, device_id: str) -> str | None:
        if device_id not in self._homes:
            best = ranked(device_id, self.eligible())
            self._homes[device_id] = best[0].name if best else None
        return self._homes[device_id]

    def owner(self, device_id: str) -> Member | None:
        view = self.devices.get(device_id)
        if view is None or view.claim is None:
            return None
        member = self.members.get(view.claim)
        return member if member is not None and member.online else None

    def responsible(self, device_id: str) -> str | None:
        """Who hears this device's lifecycle and answers its faults: its owner, or its home."""
        owner = self.owner(device_id)
        return owner.name if owner is not None else self.home(device_id)

    def current_birth(self, device_id: str) -> Birth | None:
        view = self.devices.get(device_id)
        if view is None or view.birth is None or not view.online:
            return None
        return view.birth if view.birth.session == view.session else None

    # --- what the broker says -------------------------------------------------------------

    def on_service_state(self, name: str, state: ServiceState | None) -> bool:
        """Another instance's retained state (None: cleared); True when membership changed."""
        if name == self.me.name:
            return False  # this instance knows itself
        before = self.members.get(name)
        key = None if before is None else _membership(before)
        was_online = before is not None and before.online
        if state is None:
            self.members.pop(name, None)
        else:
            member = before or Member(name)
            member.online = state.online
            if state.online:
                member.started_at = state.started_at
                member.capacity = state.capacity or 1.0
                member.tier = state.tier or "edge"
                member.placement = state.placement or "hash"
                member.models = tuple(state.models) if state.models is not None else None
                member.draining = bool(state.draining)
            self.members[name] = member
        after = self.members.get(name)
        changed = key != (None if after is None else _membership(after))
        if changed:
            self._homes.clear()
        if was_online and (after is None or not after.online):
            # Its devices are left without an owner: placing them must not wait for
            # `retry_after` since this instance last placed them (perhaps on the dead one).
            for view in self.devices.values():
                if view.claim == name:
                    view.acted_at = -math.inf
        return changed

    def on_load(self, name: str, queue: float) -> None:
        member = self.members.get(name)
        if member is not None:
            member.queue = queue

    def on_device_state(self, device_id: str, state: DeviceState, *, retained: bool) -> None:
        """A device's state; a retained one is not news of a connection just made."""
        view = self.view(device_id)
        self._uncount(view)
        if state.online:
            if view.session != state.session or not view.online:
                view.state_at = -math.inf if retained else self.clock()
            view.online = True
            view.session = state.session
        elif view.session is None or not session_is_newer(view.session, state.session):
            view.online = False  # (a will of an older session changes nothing)
        self._count(view)

    def on_birth(self, device_id: str, birth: Birth) -> Action | None:
        """A birth (of a supported protocol): answer it here, place it, or leave it."""
        view = self.view(device_id)
        self._uncount(view)
        if view.session != birth.session or not view.online:
            view.state_at = self.clock()
        view.birth, view.session, view.online = birth, birth.session, True
        self._count(view)
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
        view = self.view(device_id)
        self._uncount(view)
        if view.claim != assign.instance:
            view.moved_at = self.clock()
        view.claim, view.claim_session = assign.instance, assign.session
        self._count(view)
        if assign.instance != self.me.name:
            self.held.pop(device_id, None)
            return Release(device_id)  # (nothing to do if this instance never served it)
        if self.held.get(device_id) == assign.session or not self.settled:
            return None  # our own, heard back; or the settling sweep sees to it
        # Named here, not answered on this connection: placed here by another instance, or
        # ours from before a restart or reconnect (the device waits for a fresh answer).
        return self._adopt(device_id, view, "placed here")

    def on_decision(self, device_id: str, decision: SplitDecision | None) -> None:
        self.view(device_id).decision = decision

    def on_snapshot(self, device_id: str, payload: bytes) -> None:
        self.view(device_id).snapshot = payload or None

    # --- this instance's own doings -------------------------------------------------------

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
        view = self.view(device_id)
        self._uncount(view)
        if view.claim != self.me.name:
            view.moved_at = self.clock()
        view.claim, view.claim_session = self.me.name, session
        self._count(view)

    def placed(self, device_id: str, instance: str, session: int) -> None:
        """This instance published an `assign` naming `instance` for the device."""
        view = self.view(device_id)
        self._uncount(view)
        if view.claim != instance:
            view.moved_at = self.clock()
        view.claim, view.claim_session = instance, session
        self._count(view)
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

    # --- counting -------------------------------------------------------------------------

    def _uncount(self, view: DeviceView) -> None:
        self._online -= view.online
        if view.online and view.claim is not None:
            self._served[view.claim] -= 1

    def _count(self, view: DeviceView) -> None:
        self._online += view.online
        if view.online and view.claim is not None:
            self._served[view.claim] += 1

    def online_devices(self) -> int:
        """Devices online now, whoever serves them."""
        return self._online

    def served(self, instance: str) -> int:
        """Online devices whose claim names `instance`."""
        return self._served.get(instance, 0)


def _membership(member: Member) -> tuple[object, ...]:
    return (member.online, member.draining, member.capacity, member.tier, member.models)
