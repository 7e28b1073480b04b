"""Measure what a link does to MQTT traffic: round trip, uplink and downlink throughput.

`measure_link` runs on the device side (inside a namespace, or pointed at a proxy); the
downlink needs a sender on the broker side, `DownlinkResponder`, which answers a request
with a burst of bytes. `python -m sciot_mqtt.network --host H --port P` prints the
figures as JSON, which is how tests measure a namespace from inside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
import uuid
from types import TracebackType
from typing import Self

from sciot_mqtt._tasks import finish
from sciot_mqtt.transport import BrokerAddress, MqttSession

__all__ = ["DownlinkResponder", "measure_link"]

_ROOT = "sciot/measure"
_WINDOW = 10


async def measure_link(
    broker: BrokerAddress,
    *,
    pings: int = 20,
    bulk_bytes: int = 400_000,
    message_bytes: int = 16_384,
    timeout: float = 60.0,
) -> dict[str, float]:
    """Median round trip (ms) and throughput each way (kbit/s) as MQTT sees them."""
    me = uuid.uuid4().hex[:12]
    echo, sink, down = f"{_ROOT}/{me}/echo", f"{_ROOT}/{me}/sink", f"{_ROOT}/{me}/down"
    inbox: asyncio.Queue[tuple[str, int, float]] = asyncio.Queue()
    async with MqttSession(broker, client_id=f"sciot-measure-{me}", timeout=timeout) as mqtt:

        async def receive() -> None:
            async for message in mqtt.messages():
                await inbox.put((message.topic, len(message.payload), time.perf_counter()))

        receiver = asyncio.create_task(receive(), name="measure-receive")
        try:
            async with asyncio.timeout(timeout):
                await mqtt.subscribe(echo, down, qos=0)
                rtts = []
                for i in range(pings):
                    sent = time.perf_counter()
                    await mqtt.publish(echo, str(i).encode(), qos=0)
                    topic, _, arrived = await inbox.get()
                    rtts.append((arrived - sent) * 1000)
                rtt_ms = statistics.median(rtts)

                # Uplink: QoS 1 publishes in flight together; the last acknowledgement comes
                # one round trip after the last byte has crossed.
                chunk = b"u" * message_bytes
                count = max(1, bulk_bytes // message_bytes)
                started = time.perf_counter()
                await _publish_window(mqtt, sink, chunk, count)
                up_s = time.perf_counter() - started - rtt_ms / 1000
                uplink_kbps = count * message_bytes * 8 / max(up_s, 1e-6) / 1000

                # Downlink: from the first byte's arrival to the last one's.
                request = json.dumps({"bytes": bulk_bytes, "message_bytes": message_bytes})
                await mqtt.publish(f"{_ROOT}/{me}/request", request.encode(), qos=1)
                received, first, last = 0, 0.0, 0.0
                while received < count * message_bytes:
                    topic, size, arrived = await inbox.get()
                    if topic != down:
                        continue
                    if not received:
                        first = arrived
                    received += size
                    last = arrived
                # The first message's own transfer is not in the interval: leave its bytes out.
                down_s = max(last - first, 1e-6)
                downlink_kbps = (received - message_bytes) * 8 / down_s / 1000
        finally:
            await finish(receiver, timeout=1)
    return {
        "rtt_ms": rtt_ms,
        "rtt_min_ms": min(rtts),
        "rtt_max_ms": max(rtts),
        "uplink_kbps": uplink_kbps,
        "downlink_kbps": downlink_kbps,
    }


async def _publish_window(mqtt: MqttSession, topic: str, chunk: bytes, count: int) -> None:
    """`count` QoS 1 publishes, at most `_WINDOW` unacknowledged (aiomqtt warns beyond 10)."""
    window = asyncio.Semaphore(_WINDOW)

    async def one() -> None:
        async with window:
            await mqtt.publish(topic, chunk, qos=1)

    await asyncio.gather(*(one() for _ in range(count)))


class DownlinkResponder:
    """Broker-side partner of `measure_link`: sends the bytes a measurer asks for."""

    def __init__(self, broker: BrokerAddress) -> None:
        self.broker = broker
        self.requests = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._serve(), name="measure-responder")
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            ready.cancel()
            self._task.result()  # raises what stopped it
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await finish(self._task, timeout=2)

    async def _serve(self) -> None:
        me = uuid.uuid4().hex[:12]
        async with MqttSession(self.broker, client_id=f"sciot-measure-responder-{me}") as mqtt:
            await mqtt.subscribe(f"{_ROOT}/+/request", qos=1)
            self._ready.set()
            async for message in mqtt.messages():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    asked = json.loads(message.payload)
                    size = int(asked["message_bytes"])
                    count = max(1, int(asked["bytes"]) // size)
                    topic = message.topic.rsplit("/", 1)[0] + "/down"
                    self.requests += 1
                    chunk = b"d" * size
                    await _publish_window(mqtt, topic, chunk, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--bytes", type=int, default=400_000)
    args = parser.parse_args()
    figures = asyncio.run(
        measure_link(BrokerAddress(args.host, args.port), pings=args.pings, bulk_bytes=args.bytes)
    )
    print(json.dumps(figures), flush=True)
