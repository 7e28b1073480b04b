"""What the service knows of each device: presence, session, assignment. Pure logic, no I/O.

The service feeds it decoded messages and a clock; it answers with what to publish. Keeping
it free of MQTT makes every lifecycle rule testable without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    U32_MAX,
    Assign,
    Birth,
    DeviceCounts,
    DeviceState,
    Heartbeat,
    SplitDecision,
)
from sciot_mqtt.service.decisions import DeviceCostModel
from sciot_mqtt.service.recent import RecentRequests


class Presence(StrEnum):
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"


def session_is_newer(candidate: int, current: int) -> bool:
    """Serial-number order (RFC 1982) on 32-bit session counters, so wrapping is harmless."""
    diff = (candidate - current) & U32_MAX
    return 0 < diff < 2**31


@dataclass
class DeviceRecord:
    """Everything the service holds about one device: lifecycle, decisions, recent requests."""

    device_id: str
    session: int
    presence: Presence
    last_seen: float
    birth: Birth | None = None  # the accepted birth of `session`; None until one arrives
    model: str | None = None
    stale_since: float | None = None
    last_hb_seq: int | None = None
    hb_gaps: int = 0
    late_wills_ignored: int = 0
    last_rebirth_request: float | None = None
    offline_since: float | None = None  # when it went offline; evicted `evict_after` later
    decision: SplitDecision | None = None  # the last `split` published (or recovered)
    cost: DeviceCostModel | None = None  # what is learnt of its timing, for `model`
    recent: RecentRequests = field(default_factory=RecentRequests)  # QoS 1 redeliveries
    # Another instance of the fleet serves it now: kept a while only to answer requests
    # already sent here, never decided for, counted or watched.
    released_at: float | None = None

    @property
    def released(self) -> bool:
        return self.released_at is not None

    @property
    def registered(self) -> bool:
        return self.birth is not None


@dataclass(frozen=True, slots=True)
class Transition:
    device_id: str
    before: Presence
    after: Presence
    why: str


@dataclass(frozen=True, slots=True)
class Reaction:
    """What a lifecycle message changed, and what the service should do about it."""

    transition: Transition | None = None  # a change of presence (decide again)
    rebirth: bool = False  # ask the device for its birth
    late_will_session: int | None = None  # a will of an older session, ignored


@dataclass
class Registry:
    """Device lifecycle rules of topics.md ("Lifecycle")."""

    models: Sequence[str]
    hb_interval: float
    instance: str
    max_payload: int
    missed_heartbeats: int = 3
    offline_grace: float = 15.0
    max_devices: int = 10_000  # records held at most: births beyond are refused
    evict_after: float = 3600.0  # seconds offline before a record is dropped
    release_grace: float = 30.0  # seconds a released record answers stragglers
    clock: Callable[[], float] = time.monotonic
    evicted: int = 0  # records dropped so far, to make room or after `evict_after`
    _devices: dict[str, DeviceRecord] = field(default_factory=dict)

    def __iter__(self) -> Iterator[DeviceRecord]:
        return iter(self._devices.values())

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, device_id: str) -> DeviceRecord | None:
        return self._devices.get(device_id)

    def counts(self) -> DeviceCounts:
        tally = {p: 0 for p in Presence}
        for record in self._devices.values():
            if not record.released:
                tally[record.presence] += 1
        return DeviceCounts(
            online=tally[Presence.ONLINE],
            stale=tally[Presence.STALE],
            offline=tally[Presence.OFFLINE],
        )

    # --- messages -------------------------------------------------------------------------

    def on_birth(self, device_id: str, birth: Birth) -> Assign:
        """Register a device; returns the assignment to publish, or raises ProtocolError."""
        if birth.protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol {birth.protocol} not supported; this service speaks {PROTOCOL_VERSION}",
            )
        model = next((m for m in self.models if m in birth.models), None)
        if model is None:
            raise ProtocolError(
                ErrorCode.NO_MODEL,
                f"none of {birth.models} is served here; served: {list(self.models)}",
            )
        now = self.clock()
        # A birth comes over a live connection, so it defines the current session even when
        # its counter is lower (a device that lost its counter must still be able to join).
        record = self._devices.get(device_id)
        if record is None:
            record = self._new(device_id, birth.session, Presence.ONLINE)
            if record is None:
                raise ProtocolError(
                    ErrorCode.DEVICE_LIMIT,
                    f"this service holds {self.max_devices} devices, all online; "
                    "run this one locally or add a service instance",
                )
        record.session = birth.session
        record.offline_since = None
        record.released_at = None
        record.birth = birth
        record.model = model
        record.presence = Presence.ONLINE
        record.last_seen = now
        record.stale_since = None
        record.last_hb_seq = None
        return Assign(
            model=model,
            session=birth.session,
            hb_interval_s=self.hb_interval,
            max_payload=min(self.max_payload, birth.max_payload),
            instance=self.instance,
        )

    def on_state(self, device_id: str, state: DeviceState, *, retained: bool) -> Reaction:
        """Apply a device's `state` (or its will)."""
        now = self.clock()
        record = self._devices.get(device_id)
        if record is None:
            presence = Presence.ONLINE if state.online else Presence.OFFLINE
            if self._new(device_id, state.session, presence) is None:
                return Reaction()  # full: its birth will be refused with `device_limit`
            # A retained `online` seen at start-up: the device is out there, but this service
            # has not heard its birth; ask for it instead of waiting for a reconnect.
            return Reaction(rebirth=state.online and retained)
        if not state.online:
            if session_is_newer(record.session, state.session):
                record.late_wills_ignored += 1
                return Reaction(late_will_session=state.session)
            return Reaction(self._move(record, Presence.OFFLINE, "will or offline state"))
        if state.session != record.session:
            record.session = state.session
            record.birth = None  # a new connection; its birth follows right after
        record.last_seen = now
        transition = self._move(record, Presence.ONLINE, "state online")
        return Reaction(transition, rebirth=retained and not record.registered)

    def on_heartbeat(self, device_id: str, hb: Heartbeat) -> Reaction:
        record = self._devices.get(device_id)
        now = self.clock()
        if record is None or not record.registered or hb.session != record.session:
            return Reaction(rebirth=True)
        if record.presence is Presence.OFFLINE:
            # Declared gone, yet it speaks: its birth state is unknown to us now.
            return Reaction(rebirth=True)
        record.last_seen = now
        if record.last_hb_seq is not None and hb.seq != (record.last_hb_seq + 1) & U32_MAX:
            record.hb_gaps += 1
        record.last_hb_seq = hb.seq
        return Reaction(self._move(record, Presence.ONLINE, "heartbeat"))

    def on_recovered_assign(self, device_id: str, assign: Assign) -> None:
        """A retained `assign` read back at start-up: remember the model it named."""
        record = self._recovered(device_id, assign.session)
        if record is not None and record.model is None:
            record.model = assign.model
            if not record.registered:
                record.session = assign.session  # a record made by a recovered `split` first

    def on_recovered_split(self, device_id: str, decision: SplitDecision) -> None:
        """A retained `split` read back at start-up: the decision in force, numbering goes on."""
        record = self._recovered(device_id, 0)
        if record is not None and record.decision is None:
            record.decision = decision

    def _recovered(self, device_id: str, session: int) -> DeviceRecord | None:
        record = self._devices.get(device_id)
        if record is None:
            record = self._new(device_id, session, Presence.OFFLINE)
        return record

    def _new(self, device_id: str, session: int, presence: Presence) -> DeviceRecord | None:
        """A record for a device not known yet; None when the registry is full of online
        or stale devices (the longest-offline record makes room otherwise)."""
        if len(self._devices) >= self.max_devices:
            offline = [r for r in self._devices.values() if r.presence is Presence.OFFLINE]
            if not offline:
                return None
            oldest = min(offline, key=lambda r: r.offline_since or r.last_seen)
            del self._devices[oldest.device_id]
            self.evicted += 1
        now = self.clock()
        record = DeviceRecord(device_id, session, presence, now)
        if presence is Presence.OFFLINE:
            record.offline_since = now
        self._devices[device_id] = record
        return record

    def release(self, device_id: str) -> DeviceRecord | None:
        """Another instance serves the device now. A registered record stays `release_grace`
        to answer the requests already on their way here; any other is dropped."""
        record = self._devices.get(device_id)
        if record is None or record.released:
            return None
        if not record.registered:
            del self._devices[device_id]
            return None
        record.released_at = self.clock()
        return record

    def served(self, device_id: str) -> DeviceRecord | None:
        """The device's record if this instance serves it (held, not released)."""
        record = self._devices.get(device_id)
        return None if record is None or record.released else record

    def touch_all(self) -> None:
        """After our own reconnect: silence while we were away is not the devices' fault."""
        now = self.clock()
        for record in self._devices.values():
            if record.presence is not Presence.OFFLINE:
                record.last_seen = now

    def should_request_rebirth(self, device_id: str) -> bool:
        """Rate limit for `rebirth` commands: at most one per heartbeat interval per device."""
        record = self._devices.get(device_id)
        now = self.clock()
        if record is None:
            return True
        last = record.last_rebirth_request
        if last is not None and now - last < max(self.hb_interval, 1.0):
            return False
        record.last_rebirth_request = now
        return True

    # --- time -----------------------------------------------------------------------------

    def sweep(self) -> list[Transition]:
        """Apply heartbeat timeouts and evict long-offline records; call often (a few times
        per heartbeat interval). An evicted device's retained topics stay on the broker; if
        it comes back it registers as a new one."""
        now = self.clock()
        stale_after = self.missed_heartbeats * self.hb_interval
        moved = []
        gone = []
        handed_over = []
        for record in self._devices.values():
            if record.released_at is not None:
                if now - record.released_at > self.release_grace:
                    handed_over.append(record.device_id)
                continue
            if record.presence is Presence.ONLINE and now - record.last_seen > stale_after:
                record.stale_since = now
                moved.append(self._move(record, Presence.STALE, "missed heartbeats"))
            elif (
                record.presence is Presence.STALE
                and record.stale_since is not None
                and now - record.stale_since > self.offline_grace
            ):
                moved.append(self._move(record, Presence.OFFLINE, "stale past grace period"))
            elif (
                record.presence is Presence.OFFLINE
                and record.offline_since is not None
                and now - record.offline_since > self.evict_after
            ):
                gone.append(record.device_id)
        for device_id in gone + handed_over:
            del self._devices[device_id]
        self.evicted += len(gone)
        return [t for t in moved if t is not None]

    def _move(self, record: DeviceRecord, after: Presence, why: str) -> Transition | None:
        before = record.presence
        if before is after:
            return None
        record.presence = after
        if after is not Presence.STALE:
            record.stale_since = None
        record.offline_since = self.clock() if after is Presence.OFFLINE else None
        return Transition(record.device_id, before, after, why)
