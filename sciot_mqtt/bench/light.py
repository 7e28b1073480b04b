"""Light devices for `bench throughput`: the contract's handshake, then precomputed requests.

A light device is a real MQTT client that speaks the contract (will, retained `state`,
`birth`, waiting for the `assign` that answers its session, heartbeats, `rebirth` obeyed) but
does no model work: the request payloads are built once from tensors the benchmark computed
beforehand, and only `seq` and `session` change. So the devices cost little CPU and the
service is what the benchmark loads. Each keeps `window` requests outstanding: a lane per
slot sends one `infer` and waits for its `result` (or `error`) before sending the next.

A light device follows its `assign` as the contract's devices do (topics.md, "Device modes"):
each request goes to the instance its latest `assign` names (`dev/{id}/infer/{instance}`),
and it offloads only while that instance's `state` says online. When the instance's will
arrives, the requests still in flight to it finish "locally" with the reason `service
unavailable`, and the device is local until an `assign` answering its birth names a live
instance. A light device has no model, so "local" means: it sends nothing (each lane waits
for a live assignment) and its requests in flight end on the device with a reason; the times
it changed mode or serving instance are kept, for `bench fleet`'s failover timeline.

Run as a process: `python -m sciot_mqtt.bench.light SPEC.json`. It connects its devices,
prints `{"ready": true}` once every one has its assignment, waits for `go T_START T_STOP`
(wall clock) on stdin, sends from T_START until T_STOP, waits for the answers still due
(up to the spec's timeout), writes every request's fate to the spec's `records` file (and
each device's changes of mode to `timelines`, if given) and prints `{"final": {...}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from pydantic import BaseModel, ConfigDict

from sciot_mqtt.device.services import ServiceWatch
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    DeviceMode,
    DeviceState,
    DeviceTopic,
    Heartbeat,
    ServiceAddress,
    ServiceState,
    ServiceTopic,
    device_topic,
    parse_topic,
    service_filter,
)
from sciot_mqtt.transport import BrokerAddress, LastWill, MqttSession

__all__ = ["ANSWERED", "ERROR", "LOCAL", "MISSING", "OUTCOMES", "LightSpec", "Outcome"]

# A request is answered (`result`), answered with an `error`, finished on the device with a
# reason (its instance's will arrived while it was in flight), or missing (no answer within
# the timeout: a loss).
ANSWERED, ERROR, LOCAL, MISSING = "answered", "error", "local", "missing"
OUTCOMES = (ANSWERED, ERROR, LOCAL, MISSING)
Outcome = str
OFFLOAD_MODE: DeviceMode = "offload"
LOCAL_MODE: DeviceMode = "local"


class LightSpec(BaseModel):
    """What one light-device process runs."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    device_ids: list[str]
    window: int
    model: str
    # A msgpack map: the `infer` payload of seq 0, session 0 (the benchmark builds it with
    # `InferRequest`, so the wire format is the contract's); a list of them is cycled.
    payloads: str
    records: str
    # Where to write each device's changes of mode: {device: [[wall time, mode, instance]]}.
    timelines: str | None = None
    answer_timeout: float = 10.0
    handshake_timeout: float = 30.0


@dataclass
class _Request:
    sent: float  # wall clock, to place it in the benchmark's window
    started: float  # perf_counter, for the latency
    instance: str  # the instance it was sent to
    latency_ms: float | None = None
    outcome: Outcome = MISSING
    code: str | None = None


@dataclass
class LightDevice:
    """One device: a connection, its handshake and `window` lanes of requests."""

    device_id: str
    address: BrokerAddress
    model: str
    templates: list[dict[str, Any]]
    window: int
    answer_timeout: float
    session: int = field(default_factory=lambda: random.randrange(1, 2**31))
    instance: str | None = None  # the serving instance, from the `assign` of this session
    requests: list[_Request] = field(default_factory=list)
    # [wall time, mode, serving instance] at every change of either.
    timeline: list[tuple[float, DeviceMode, str | None]] = field(default_factory=list)
    services: ServiceWatch = field(default_factory=ServiceWatch)
    _assign_live: bool = False  # an `assign` answered this session since its instance started
    _offloading: asyncio.Event = field(default_factory=asyncio.Event)
    _hb_interval: float = 5.0
    _waiting: dict[int, tuple[_Request, asyncio.Future[None]]] = field(default_factory=dict)
    _seq: int = 0

    def _topic(self, kind: DeviceTopic) -> str:
        return device_topic(self.device_id, kind)

    @property
    def mode(self) -> DeviceMode:
        live = self.instance is not None and self.services.is_online(self.instance)
        return OFFLOAD_MODE if live and self._assign_live else LOCAL_MODE

    def _changed(self) -> None:
        """Note the mode and instance if either changed; wake the lanes when offloading."""
        now = (self.mode, self.instance if self.mode == OFFLOAD_MODE else None)
        if not self.timeline or self.timeline[-1][1:] != now:
            self.timeline.append((time.time(), *now))
        if now[0] == OFFLOAD_MODE:
            self._offloading.set()
        else:
            self._offloading.clear()

    def _on_service_state(self, instance: str, payload: bytes) -> None:
        if not payload:
            self.services.cleared(instance)
            state = None
        else:
            state = ServiceState.decode(payload)
            if self.services.on_state(instance, state) and instance == self.instance:
                self._assign_live = False  # it (re)started: until it answers a birth
        if state is None or not state.online:
            # Requests in flight to an instance that is gone finish on the device now.
            for seq, (request, future) in list(self._waiting.items()):
                if request.instance == instance:
                    del self._waiting[seq]
                    request.latency_ms = (time.perf_counter() - request.started) * 1000
                    request.outcome, request.code = LOCAL, "service unavailable"
                    future.set_result(None)
        self._changed()

    async def _birth(self, mqtt: MqttSession) -> None:
        online = DeviceState(online=True, session=self.session)
        await mqtt.publish(self._topic(DeviceTopic.STATE), online.encode(), qos=1, retain=True)
        birth = {
            "protocol": PROTOCOL_VERSION,
            "session": self.session,
            "kind": "bench-light",
            "models": [self.model],
            "max_payload": 1 << 20,
        }
        await mqtt.publish(self._topic(DeviceTopic.BIRTH), msgpack.packb(birth), qos=1)

    async def _read(self, mqtt: MqttSession) -> None:
        assign, result, error, cmd = (
            self._topic(DeviceTopic.ASSIGN),
            self._topic(DeviceTopic.RESULT),
            self._topic(DeviceTopic.ERROR),
            self._topic(DeviceTopic.CMD),
        )
        async for message in mqtt.messages():
            topic = message.topic
            address = parse_topic(topic)
            if isinstance(address, ServiceAddress):
                if address.kind is ServiceTopic.STATE:
                    self._on_service_state(address.instance, message.payload)
            elif topic in (result, error):
                body = msgpack.unpackb(message.payload)
                waiting = self._waiting.pop(body.get("seq"), None)
                if waiting is None:
                    continue  # an error without a seq, or a duplicate answer
                request, future = waiting
                request.latency_ms = (time.perf_counter() - request.started) * 1000
                request.outcome = ANSWERED if topic == result else ERROR
                request.code = None if topic == result else str(body.get("code"))
                future.set_result(None)
            elif topic == assign and message.payload:
                body = msgpack.unpackb(message.payload)
                if body.get("session") == self.session:  # not a retained one of an old session
                    self._hb_interval = float(body["hb_interval_s"])
                    self.instance = str(body["instance"])  # `infer` goes to this instance
                    self._assign_live = True
                    self._changed()
            elif topic == cmd:
                await self._birth(mqtt)  # `rebirth` is the only command

    async def _heartbeats(self, mqtt: MqttSession) -> None:
        seq = 0
        while True:
            beat = Heartbeat(seq=seq, session=self.session, mode=self.mode)
            await mqtt.publish(self._topic(DeviceTopic.HB), beat.encode(), qos=0)
            seq += 1
            await asyncio.sleep(self._hb_interval)

    async def _lane(self, mqtt: MqttSession, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        while time.time() < stop_at:
            if not self._offloading.is_set():  # local: send nothing until assigned again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._offloading.wait(), stop_at - time.time())
                continue
            assert self.instance is not None, "offloading names an instance"
            topic = device_topic(self.device_id, DeviceTopic.INFER, self.instance)
            self._seq += 1
            seq = self._seq
            template = self.templates[seq % len(self.templates)]
            payload = msgpack.packb(template | {"seq": seq, "session": self.session})
            request = _Request(time.time(), time.perf_counter(), self.instance)
            future: asyncio.Future[None] = loop.create_future()
            self._waiting[seq] = (request, future)
            self.requests.append(request)
            await mqtt.publish(topic, payload, qos=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, self.answer_timeout)
            if not future.done():
                self._waiting.pop(seq, None)
                return  # unanswered: counted as missing; this lane stops

    async def run(self, ready: asyncio.Event, go: asyncio.Future[tuple[float, float]]) -> None:
        """Handshake, then signal `ready`; after `go` (start, stop) send until stop."""
        will = DeviceState(online=False, session=self.session)
        async with MqttSession(
            self.address,
            client_id=self.device_id,
            will=LastWill(self._topic(DeviceTopic.STATE), will.encode()),
            max_inflight=max(100, 2 * self.window),
        ) as mqtt:
            reader = asyncio.create_task(self._read(mqtt), name=f"{self.device_id}-rx")
            beats: asyncio.Task[None] | None = None
            try:
                await mqtt.subscribe(
                    self._topic(DeviceTopic.ASSIGN),
                    self._topic(DeviceTopic.RESULT),
                    self._topic(DeviceTopic.ERROR),
                    self._topic(DeviceTopic.CMD),
                    service_filter(ServiceTopic.STATE),
                )
                await self._birth(mqtt)
                await self._offloading.wait()
                beats = asyncio.create_task(self._heartbeats(mqtt), name=f"{self.device_id}-hb")
                ready.set()
                start, stop = await go
                await asyncio.sleep(max(0.0, start - time.time()))
                await asyncio.gather(*(self._lane(mqtt, stop) for _ in range(self.window)))
                gone = DeviceState(online=False, session=self.session)
                await mqtt.publish(
                    self._topic(DeviceTopic.STATE), gone.encode(), qos=1, retain=True
                )
            finally:
                for task in (reader, beats):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


@dataclass
class LightRun:
    """What a light-device process reports: every request's [sent (wall clock), latency_ms,
    outcome, error code or reason, instance, device], each device's timeline, the devices'
    failures."""

    rows: list[list[Any]]
    timelines: dict[str, list[tuple[float, DeviceMode, str | None]]]
    failures: list[str]


async def _run(spec: LightSpec, templates: list[dict[str, Any]]) -> LightRun:
    address = BrokerAddress(spec.host, spec.port)
    loop = asyncio.get_running_loop()
    go: asyncio.Future[tuple[float, float]] = loop.create_future()
    devices = [
        LightDevice(d, address, spec.model, templates, spec.window, spec.answer_timeout)
        for d in spec.device_ids
    ]
    readies = [asyncio.Event() for _ in devices]
    tasks = [
        asyncio.create_task(device.run(ready, go), name=device.device_id)
        for device, ready in zip(devices, readies, strict=True)
    ]
    try:
        waiting = asyncio.gather(*(r.wait() for r in readies))
        await asyncio.wait_for(waiting, spec.handshake_timeout)
        _emit({"ready": True})
        line = await loop.run_in_executor(None, sys.stdin.readline)
        parts = line.split()
        if len(parts) != 3 or parts[0] != "go":
            raise SystemExit("light: expected `go START STOP`")
        go.set_result((float(parts[1]), float(parts[2])))
        ended = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    rows = [
        [r.sent, r.latency_ms, r.outcome, r.code, r.instance, device.device_id]
        for device in devices
        for r in device.requests
    ]
    timelines = {device.device_id: device.timeline for device in devices}
    return LightRun(rows, timelines, [repr(e) for e in ended if isinstance(e, BaseException)])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sciot_mqtt.bench.light SPEC.json", file=sys.stderr)
        return 2
    spec = LightSpec.model_validate_json(Path(args[0]).read_bytes())
    templates = msgpack.unpackb(Path(spec.payloads).read_bytes())
    run = asyncio.run(_run(spec, templates))
    Path(spec.records).write_text(json.dumps(run.rows, separators=(",", ":")))
    if spec.timelines is not None:
        Path(spec.timelines).write_text(json.dumps(run.timelines, separators=(",", ":")))
    counts = {k: sum(1 for r in run.rows if r[2] == k) for k in OUTCOMES}
    _emit({"final": {"sent": len(run.rows), **counts, "device_failures": run.failures[:5]}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
