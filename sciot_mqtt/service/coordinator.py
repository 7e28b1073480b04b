"""The service's side of the fleet: feeds `Fleet` from the wire and carries out its actions.

`fleet.py` decides (pure logic); this module is the wiring between it and the service: what
the service hears of other instances and devices goes in, and `Place` (answer a birth here,
or publish the `assign` naming another instance), `Rebirth`, `Release` and `Refuse` come out.
It also keeps each served device's retained `snapshot` (`snapshot.py`) up to date and
restores a cost model from it when a device arrives from another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Birth,
    DeviceSnapshot,
    DeviceState,
    DeviceTopic,
    Ping,
    ServiceState,
    ServiceStats,
    SplitDecision,
    is_valid_device_id,
)
from sciot_mqtt.protocol.accounts import RESERVED_PREFIX
from sciot_mqtt.service.fleet import Action, Fleet, LoadMeter, Place, Rebirth, Refuse, Release
from sciot_mqtt.service.outbox import MqttOutbox
from sciot_mqtt.service.placement import Member, make_policy
from sciot_mqtt.service.registry import DeviceRecord, Registry
from sciot_mqtt.service.snapshot import SnapshotKeeper, decode_snapshot, restore
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.transport import Inbound

if TYPE_CHECKING:
    from sciot_mqtt.service.planner import SplitPlanner

SETTLE_NONCE = "fleet-settle-"


class FleetHost(Protocol):
    """What the coordinator needs of the service it runs in."""

    registry: Registry
    planner: SplitPlanner

    async def answer_birth(self, device_id: str, birth: Birth) -> None:
        """Register the device here and publish its `assign` (raises ProtocolError)."""
        ...

    async def publish_own_state(self) -> None:
        """Publish this instance's retained `state` again (its draining flag changed)."""
        ...


class FleetCoordinator:
    """One instance's membership of the fleet."""

    def __init__(self, settings: ServiceSettings, host: FleetHost, outbox: MqttOutbox) -> None:
        self.settings = settings
        self.host = host
        self.outbox = outbox
        self.me = Member(
            settings.instance,
            online=True,
            capacity=settings.capacity,
            tier=settings.tier,
            placement=settings.placement,
            models=tuple(settings.models),
        )
        self.fleet = Fleet(
            self.me,
            make_policy(
                settings.placement, tier_high=settings.tier_high, tier_low=settings.tier_low
            ),
            retry_after=max(1.0, settings.heartbeat_interval),
            tier_cooldown=2 * settings.stats_interval,
            max_views=2 * settings.max_devices,
        )
        self.snapshots = SnapshotKeeper(settings.stats_interval)
        self.load = LoadMeter()
        self.placements = 0  # assigns published naming another instance
        self.adoptions = 0  # devices that came here from another instance
        self.restored = 0  # cost models started from another instance's snapshot
        self._nonces = itertools.count()
        self._settle_nonce: str | None = None
        self._log = structlog.get_logger("sciot.fleet").bind(instance=settings.instance)

    # --- this instance ----------------------------------------------------------------------

    def state_fields(self) -> dict[str, Any]:
        """What this instance's retained `state` says to the fleet."""
        return {
            "capacity": self.me.capacity,
            "tier": self.me.tier,
            "placement": self.me.placement,
            "models": list(self.me.models or ()),
            "draining": self.me.draining,
        }

    def new_connection(self) -> Ping:
        """Connected: the ping to send once subscribed; the view is settled when it returns."""
        self.fleet.new_connection()
        self._settle_nonce = f"{SETTLE_NONCE}{next(self._nonces)}"
        return Ping(nonce=self._settle_nonce)

    async def on_ping(self, ping: Ping) -> bool:
        """True if it was the settling ping (the retained messages before it are in)."""
        if not ping.nonce.startswith(SETTLE_NONCE):
            return False
        if ping.nonce == self._settle_nonce:
            self._settle_nonce = None
            self._log.info(
                "fleet view settled",
                instances=sorted(m.name for m in self.fleet.eligible()),
                devices=len(self.fleet.devices),
            )
            await self.execute(self.fleet.settle())
        return True

    def serves(self, device_id: str) -> bool:
        """Whether this instance hears the device's lifecycle: it serves it, or it is the
        one to place it (and to answer its faults)."""
        if self.host.registry.served(device_id) is not None:
            return True
        return self.fleet.responsible(device_id) == self.me.name

    async def follow(self, running: Callable[[], int]) -> None:
        """Sample the load; now and then, do what the fleet's view asks (orphans, moves)."""
        period = min(0.25, self.settings.stats_interval / 4)
        ticks_per_sweep = max(1, round(min(1.0, self.settings.stats_interval) / period))
        for tick in itertools.count():
            await asyncio.sleep(period)
            self.load.sample(running())
            if tick % ticks_per_sweep == 0:
                await self.tick()

    async def on_record(self, device_id: str, kind: DeviceTopic, message: Inbound) -> None:
        """A retained record of the fleet: the claim (`assign`), `split` or `snapshot`."""
        if kind is DeviceTopic.ASSIGN:
            if message.retain and message.payload:
                with contextlib.suppress(ProtocolError):
                    assign = Assign.decode(message.payload)
                    if assign.instance == self.me.name:
                        self.host.registry.on_recovered_assign(device_id, assign)
            await self.on_assign(device_id, message.payload)
        elif kind is DeviceTopic.SPLIT:
            decision = self.on_split(device_id, message.payload)
            if message.retain and decision is not None and self.host.registry.served(device_id):
                self.host.registry.on_recovered_split(device_id, decision)
        else:
            self.on_snapshot(device_id, message.payload)

    async def observe(self, device_id: str, kind: DeviceTopic, message: Inbound) -> None:
        """A device another instance serves: what the fleet's view needs, no answer."""
        if not is_valid_device_id(device_id) or device_id.startswith(RESERVED_PREFIX):
            return
        with contextlib.suppress(ProtocolError):
            if kind is DeviceTopic.STATE and message.payload:
                state = DeviceState.decode(message.payload)
                self.on_device_state(device_id, state, retained=message.retain)
            elif kind is DeviceTopic.BIRTH:
                birth = Birth.decode(message.payload)
                if birth.protocol == PROTOCOL_VERSION:
                    await self.on_birth(device_id, birth)

    async def tick(self) -> None:
        """Periodic: sample the load, and do what the fleet's view asks for."""
        await self.execute(self.fleet.sweep())

    async def hand_over(self, timeout: float, wait: Any) -> int:
        """A clean stop: say `draining`, so the others take this instance's devices, and wait
        (`wait(predicate, timeout)`) until they did. Returns the devices still held."""
        if not self.fleet.others_eligible():
            return len(self.fleet.held)
        self.me.draining = True
        for record in list(self.host.registry):  # (it changes while publishing)
            if not record.released:
                await self._publish_snapshot(record, force=True)
        await self.host.publish_own_state()
        self._log.info("handing devices over", devices=len(self.fleet.held))
        with contextlib.suppress(TimeoutError):
            await wait(self._handed_over, timeout)
        return len(self.fleet.held)

    def _handed_over(self) -> bool:
        """No device this instance answered is online and still named here."""
        devices = self.fleet.devices
        return not any(d in devices and devices[d].online for d in self.fleet.held)

    # --- what it hears ----------------------------------------------------------------------

    async def on_member_state(self, name: str, payload: bytes) -> None:
        state = None
        if payload:
            try:
                state = ServiceState.decode(payload)
            except ProtocolError as error:
                self._log.warning("instance state rejected", other=name, reason=error.reason)
                return
        if state is not None and state.online and (state.placement or "hash") != self.me.placement:
            self._log.warning(
                "an instance follows another placement policy",
                other=name,
                its=state.placement or "hash",
                ours=self.me.placement,
            )
        if self.fleet.on_service_state(name, state):
            self._log.info(
                "fleet membership",
                other=name,
                online=bool(state and state.online),
                draining=bool(state and state.draining),
                eligible=sorted(m.name for m in self.fleet.eligible()),
            )
            await self.execute(self.fleet.sweep())

    def on_member_stats(self, name: str, payload: bytes) -> None:
        try:
            stats = ServiceStats.decode(payload)
        except ProtocolError:
            return
        if stats.load is not None:
            self.fleet.on_load(name, stats.load.queue)

    async def on_assign(self, device_id: str, payload: bytes) -> None:
        if not payload:
            return
        with contextlib.suppress(ProtocolError):
            action = self.fleet.on_claim(device_id, Assign.decode(payload))
            if action is not None:
                await self.execute([action])

    def on_split(self, device_id: str, payload: bytes) -> SplitDecision | None:
        decision = None
        if payload:
            with contextlib.suppress(ProtocolError):
                decision = SplitDecision.decode(payload)
        self.fleet.on_decision(device_id, decision)
        return decision

    def on_snapshot(self, device_id: str, payload: bytes) -> None:
        self.fleet.on_snapshot(device_id, payload)

    def on_device_state(self, device_id: str, state: DeviceState, *, retained: bool) -> None:
        self.fleet.on_device_state(device_id, state, retained=retained)

    async def on_birth(self, device_id: str, birth: Birth) -> None:
        action = self.fleet.on_birth(device_id, birth)
        if action is not None:
            await self.execute([action])

    # --- doing ------------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                await self._carry_out(action)
            except ProtocolError as error:
                # A birth this instance cannot serve (another protocol, no model, full).
                if isinstance(action, Place | Refuse):
                    self.fleet.refused(action.device_id, action.birth)
                await self.outbox.reject(action.device_id, DeviceTopic.BIRTH, error, None)

    async def _carry_out(self, action: Action) -> None:
        if isinstance(action, Place):
            if action.instance == self.me.name:
                await self.host.answer_birth(action.device_id, action.birth)
            else:
                await self._place_elsewhere(action)
        elif isinstance(action, Rebirth):
            await self.outbox.request_rebirth(action.device_id, action.why)
        elif isinstance(action, Release):
            record = self.host.registry.release(action.device_id)
            self.snapshots.forget(action.device_id)
            if record is not None:
                self._log.info("device handed over", device_id=action.device_id)
        elif isinstance(action, Refuse):
            raise ProtocolError(
                ErrorCode.NO_MODEL,
                f"no instance of the fleet serves any of {action.birth.models}",
            )

    async def _place_elsewhere(self, action: Place) -> None:
        member = self.fleet.members[action.instance]
        model = member.model_for(action.birth)
        assert model is not None  # the policy chose among the instances serving its models
        assign = Assign(
            model=model,
            session=action.birth.session,
            hb_interval_s=self.settings.heartbeat_interval,
            max_payload=min(self.settings.max_payload, action.birth.max_payload),
            instance=action.instance,
        )
        self.placements += 1
        self._log.info(
            "device placed",
            device_id=action.device_id,
            on=action.instance,
            why=action.why,
            policy=self.me.placement,
        )
        self.fleet.placed(action.device_id, action.instance, action.birth.session)
        await self.outbox.send(action.device_id, assign)
        # It is not ours (if it was): the claim above moved it.
        self.host.registry.release(action.device_id)

    def answered(self, record: DeviceRecord) -> None:
        """This instance answered the device's birth: start it from what the fleet learnt."""
        view = self.fleet.devices.get(record.device_id)
        came_from = view.claim if view is not None else None
        self.fleet.answered(record.device_id, record.session)
        if view is None or record.birth is None:
            return
        if came_from is not None and came_from != self.me.name:
            self.adoptions += 1
        known = view.decision
        if record.decision is None and known is not None and known.model == record.model:
            record.decision = known  # numbering goes on across instances
        if record.cost is None:
            snapshot = decode_snapshot(view.snapshot)
            if snapshot is not None and self._fits(snapshot, record):
                cost = self.host.planner.cost_model(record)
                if cost is not None and restore(cost, snapshot):
                    self.restored += 1
                    self._log.info(
                        "cost model taken over",
                        device_id=record.device_id,
                        learnt_by=snapshot.instance,
                        ops_known=snapshot.device_ms is not None,
                    )

    @staticmethod
    def _fits(snapshot: DeviceSnapshot, record: DeviceRecord) -> bool:
        birth = record.birth
        return birth is not None and (snapshot.kind, snapshot.model) == (birth.kind, record.model)

    async def after_decision(self, record: DeviceRecord) -> None:
        """After each answered inference or local run: publish the snapshot if it is due."""
        await self._publish_snapshot(record)

    async def _publish_snapshot(self, record: DeviceRecord, *, force: bool = False) -> None:
        snapshot = self.snapshots.due(record, self.me.name, force=force)
        if snapshot is not None:
            await self.outbox.send(record.device_id, snapshot)
            self.fleet.on_snapshot(record.device_id, snapshot.encode())

    async def after_birth(self, record: DeviceRecord) -> None:
        await self._publish_snapshot(record, force=True)
