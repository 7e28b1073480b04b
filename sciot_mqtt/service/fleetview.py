"""The view of a fleet that every service instance keeps alike. Pure logic, no I/O.

Every instance builds it from what the broker tells all of them alike: the instances'
retained `state` and wills (membership), their `stats` (load), and of every device its
retained `state`, its `birth`, and its retained `assign` -- the *claim*: the instance an
`assign` names serves the device, and the latest `assign` wins. From that view:

- a device's **owner** is the instance its claim names, while that instance is online;
- its **home** is the rendezvous winner among the instances taking devices (online, not
  draining): the one instance that places it when it has no owner to stay with.

What an instance does about it (answer, place, hand over) is `fleet.py`'s; the placement
policies (`placement.py`) read this view.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sciot_mqtt.protocol import Birth, DeviceState, ServiceState, SplitDecision
from sciot_mqtt.service.placement import Member, ranked
from sciot_mqtt.service.registry import session_is_newer


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


class FleetView:
    """Membership, load, and every device's presence, birth and claim, as this instance
    hears them; the same at every instance once the broker's messages are in."""

    def __init__(self, me: Member, *, max_views: int, clock: Callable[[], float]) -> None:
        self.me = me
        self.clock = clock
        # Views are kept for every device id heard, so a flood of new ids must not grow them
        # without bound (as the registry's `max_devices` bounds records): past this many,
        # the views of offline devices are forgotten, the longest known first.
        self.max_views = max_views
        self.members: dict[str, Member] = {me.name: me}
        self.devices: dict[str, DeviceView] = {}
        self._served: Counter[str] = Counter()  # online devices by the instance claiming them
        self._online = 0  # online devices
        self._homes: dict[str, str | None] = {}  # cache, cleared when membership changes
        # Devices a sweep placed on each instance so far, counted until the sweep ends (its
        # actions are carried out after it): without them one sweep placing several devices
        # would see the same counts for each and could fill an instance past its bound.
        self._placing: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self.me.name

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

    def on_decision(self, device_id: str, decision: SplitDecision | None) -> None:
        self.view(device_id).decision = decision

    def on_snapshot(self, device_id: str, payload: bytes) -> None:
        self.view(device_id).snapshot = payload or None

    def _record_birth(self, device_id: str, birth: Birth) -> DeviceView:
        """A birth heard: the device is online in the birth's session."""
        view = self.view(device_id)
        self._uncount(view)
        if view.session != birth.session or not view.online:
            view.state_at = self.clock()
        view.birth, view.session, view.online = birth, birth.session, True
        self._count(view)
        return view

    def _record_claim(self, device_id: str, instance: str, session: int) -> DeviceView:
        """An `assign` naming `instance` for the device's `session`, heard or published here."""
        view = self.view(device_id)
        self._uncount(view)
        if view.claim != instance:
            view.moved_at = self.clock()
        view.claim, view.claim_session = instance, session
        self._count(view)
        return view

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
