"""Light devices for `bench throughput`: the contract's handshake, then precomputed requests.

A light device is a real MQTT client that speaks the contract (will, retained `state`,
`birth`, waiting for the `assign` that answers its session, heartbeats, `rebirth` obeyed) but
does no model work: the request payloads are built once from tensors the benchmark computed
beforehand, and only `seq` and `session` change. So the devices cost little CPU and the
service is what the benchmark loads. Each keeps `window` requests outstanding: a lane per
slot sends one `infer` and waits for its `result` (or `error`) before sending the next.

Run as a process: `python -m sciot_mqtt.bench.light SPEC.json`. It connects its devices,
prints `{"ready": true}` once every one has its assignment, waits for `go T_START T_STOP`
(wall clock) on stdin, sends from T_START until T_STOP, waits for the answers still due
(up to the spec's timeout), writes every request's fate to the spec's `records` file and
prints `{"final": {...}}`.
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

from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    DeviceState,
    DeviceTopic,
    Heartbeat,
    device_topic,
)
from sciot_mqtt.transport import BrokerAddress, LastWill, MqttSession

__all__ = ["ANSWERED", "ERROR", "MISSING", "LightSpec", "Outcome"]

ANSWERED, ERROR, MISSING = "answered", "error", "missing"
Outcome = str


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
    answer_timeout: float = 10.0
    handshake_timeout: float = 30.0


@dataclass
class _Request:
    sent: float  # wall clock, to place it in the benchmark's window
    started: float  # perf_counter, for the latency
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
    _assigned: asyncio.Event = field(default_factory=asyncio.Event)
    _hb_interval: float = 5.0
    _waiting: dict[int, tuple[_Request, asyncio.Future[None]]] = field(default_factory=dict)
    _seq: int = 0

    def _topic(self, kind: DeviceTopic) -> str:
        return device_topic(self.device_id, kind)

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
            if topic in (result, error):
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
                    self._assigned.set()
            elif topic == cmd:
                await self._birth(mqtt)  # `rebirth` is the only command

    async def _heartbeats(self, mqtt: MqttSession) -> None:
        seq = 0
        while True:
            beat = Heartbeat(seq=seq, session=self.session, mode="offload")
            await mqtt.publish(self._topic(DeviceTopic.HB), beat.encode(), qos=0)
            seq += 1
            await asyncio.sleep(self._hb_interval)

    async def _lane(self, mqtt: MqttSession, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        assert self.instance is not None, "assigned before sending"
        topic = device_topic(self.device_id, DeviceTopic.INFER, self.instance)
        while time.time() < stop_at:
            self._seq += 1
            seq = self._seq
            template = self.templates[seq % len(self.templates)]
            payload = msgpack.packb(template | {"seq": seq, "session": self.session})
            request = _Request(time.time(), time.perf_counter())
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
                )
                await self._birth(mqtt)
                await self._assigned.wait()
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


async def _run(
    spec: LightSpec, templates: list[dict[str, Any]]
) -> tuple[list[list[Any]], list[str]]:
    """Every request's [sent, latency_ms, outcome, error code], and the devices' failures."""
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
        [r.sent, r.latency_ms, r.outcome, r.code] for device in devices for r in device.requests
    ]
    return rows, [repr(e) for e in ended if isinstance(e, BaseException)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sciot_mqtt.bench.light SPEC.json", file=sys.stderr)
        return 2
    spec = LightSpec.model_validate_json(Path(args[0]).read_bytes())
    templates = msgpack.unpackb(Path(spec.payloads).read_bytes())
    rows, failures = asyncio.run(_run(spec, templates))
    Path(spec.records).write_text(json.dumps(rows, separators=(",", ":")))
    counts = {k: sum(1 for r in rows if r[2] == k) for k in (ANSWERED, ERROR, MISSING)}
    _emit({"final": {"sent": len(rows), **counts, "device_failures": failures[:5]}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
