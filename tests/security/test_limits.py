"""Bounded input (issue 11, holes 4 and 6 in part), on both brokers.

A publish over the packet limit is refused before it is buffered: amqtt (as `sciot-mqtt up`
runs it) checks each packet's declared length, Mosquitto has the shipped `max_packet_size`.
A non-finite or absurd timing is refused as `invalid` and reaches no cost model.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
import pytest_asyncio

from sciot_mqtt.broker import MosquittoBroker, free_port, until_accepting
from sciot_mqtt.errors import ConfigurationError, ErrorCode
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    DeviceTopic,
    ErrorReport,
    ServiceState,
    ServiceTopic,
    device_topic,
    service_topic,
)
from sciot_mqtt.protocol.codec import TIMING_MAX_MS
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress, MqttSession
from tests.processes import Child, spawn
from tests.security.conftest import (
    INSTANCE,
    OPERATOR,
    SERVICE,
    SecuredBroker,
    served,
    shipped_max_packet_size,
)
from tests.security.raw_mqtt import connect_packet, open_connection, publish_header

HUGE = 100 * 2**20  # the 100 MB publish
# How much a process's peak memory may grow under the flood. Buffering the publish costs at
# least its 100 MB (the issue measured +837 MB in amqtt, +274 MB through Mosquitto).
RSS_BOUND = 50 * 2**20


def peak_rss(pid: int) -> int:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in bytes:
    a peak, so a buffer freed again before anyone looks is still counted."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@dataclass
class ServedBroker(SecuredBroker):
    """A secured broker with `sciot-mqtt up` serving it as a child process."""

    up: Child | None = None

    def pids(self) -> dict[str, int]:
        assert self.up is not None
        found = {"sciot-mqtt up": self.up.process.pid}
        if self.pid is not None:
            found["mosquitto"] = self.pid
        return found


@pytest_asyncio.fixture(params=["amqtt", "mosquitto"])
async def served_broker(
    request: pytest.FixtureRequest,
    password_file: tuple[Path, dict[str, str]],
    acl_file: Path,
    sciot_models: dict[str, ModelPackage],
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> AsyncIterator[ServedBroker]:
    """`sciot-mqtt up` as an operator runs it: with its embedded broker and a password file,
    or against Mosquitto with the shipped packet limit."""
    path, passwords = password_file
    secret = tmp_path / "service.password"
    secret.write_text(passwords[SERVICE])
    cache = sciot_models["fomo96"].directory.parent
    argv = [*cli, "up", "--instance", INSTANCE, "--password-file", str(secret)]
    argv += ["--model-cache", str(cache), "--heartbeat-interval", "0.5"]
    async with contextlib.AsyncExitStack() as stack:
        pid = None
        if request.param == "amqtt":
            port = free_port()
            address = BrokerAddress("127.0.0.1", port)
            argv += ["--port", str(port), "--credentials-file", str(path)]
        else:
            try:
                mosquitto = MosquittoBroker(
                    password_file=path,
                    acl_file=acl_file,
                    max_packet_size=shipped_max_packet_size(),
                )
            except ConfigurationError as exc:
                pytest.skip(str(exc))
            await stack.enter_async_context(mosquitto)
            address, pid = mosquitto.address, mosquitto.pid
            argv += ["--external-broker", "--port", str(address.port)]
        up = await stack.enter_async_context(spawn(argv, cli_env, tmp_path, "up"))
        await asyncio.wait_for(until_accepting(address), 60)
        broker = ServedBroker(request.param, address, passwords, path, pid, up)
        state = service_topic(INSTANCE, ServiceTopic.STATE)
        async with MqttProbe(broker.as_user(OPERATOR), state, client_id=OPERATOR) as probe:
            await probe.expect_message(ServiceState, state, lambda s: s.online, timeout=60)
        yield broker


async def _flood(broker: ServedBroker, account: str) -> int:
    """Log in as `account`, announce one 100 MB publish on its `infer` topic and stream it;
    the bytes sent before the broker closed the connection."""
    packet = connect_packet(account, username=account, password=broker.passwords[account])
    code, reader, writer = await open_connection(broker.address, packet)
    assert code == 0
    writer.write(publish_header(device_topic(account, DeviceTopic.INFER, INSTANCE), HUGE))
    chunk = bytes(2**20)  # the payload is streamed: the attacker holds 1 MB, not 100
    sent = 0
    try:
        while sent < HUGE:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 30)
            sent += len(chunk)
        # All sent: whatever the broker does, it had to read it.
        await asyncio.wait_for(reader.read(), 30)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.transport.abort()
    return sent


async def test_an_oversized_publish_is_refused_before_it_is_buffered(
    served_broker: ServedBroker, sciot_models: dict[str, ModelPackage]
) -> None:
    broker = served_broker
    await served(broker, "dev-b", sciot_models)  # warm: interpreters, buffers, sessions
    before = {name: peak_rss(pid) for name, pid in broker.pids().items()}

    sent = await _flood(broker, "dev-a")

    grew = {name: peak_rss(pid) - before[name] for name, pid in broker.pids().items()}
    assert sent < HUGE, "the broker read the whole 100 MB publish"
    for name, bytes_ in grew.items():
        assert bytes_ < RSS_BOUND, f"{name}'s peak memory grew by {bytes_ / 2**20:.0f} MB"
    # The service still serves a well-behaved device, and the attacker's account itself.
    await served(broker, "dev-b", sciot_models)
    await served(broker, "dev-a", sciot_models)
    assert broker.up is not None and broker.up.process.returncode is None


async def test_the_limit_leaves_room_for_the_largest_accepted_payload(
    secured_broker: SecuredBroker, service: Service, observer: MqttProbe
) -> None:
    """A payload of exactly `max_payload` bytes still passes both brokers and reaches the
    service (which answers it: it is no valid request)."""
    broker = secured_broker
    payload = bytes(service.settings.max_payload)
    errors = device_topic("dev-a", DeviceTopic.ERROR)
    async with MqttSession(broker.as_user("dev-a"), client_id="dev-a") as device:
        await device.publish(device_topic("dev-a", DeviceTopic.INFER, INSTANCE), payload, qos=1)
    report = await observer.expect_message(ErrorReport, errors, timeout=10)
    assert report.code is ErrorCode.MALFORMED, report


def _infer_with(changes: dict[str, object]) -> bytes:
    request = {
        "seq": 1, "session": 1, "model": "fomo96", "split": 5,
        "tensors": [{"index": 0, "dtype": "int8", "shape": [1], "scale": 0.1,
                     "zero_point": 0, "data": b"\x00"}],
        "device_ms": [1.0] * 5,
    } | changes  # fmt: skip
    packed: bytes = msgpack.packb(request, use_bin_type=True)
    return packed


def _timings_with(device_ms: list[float]) -> bytes:
    timings = {
        "seq": 2, "session": 1, "model": "fomo96", "reason": "local",
        "device_ms": device_ms, "detections": [],
    }  # fmt: skip
    packed: bytes = msgpack.packb(timings, use_bin_type=True)
    return packed


async def test_non_finite_and_absurd_timings_are_invalid(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    """The issue's device reported `rtt_ms` and `device_ms` of NaN, infinity and 1e190 and
    got decisions predicting 190-digit latencies. Each is now an `invalid` error, and the
    device's cost model only ever holds values within the contract."""
    broker = secured_broker
    errors = device_topic("dev-a", DeviceTopic.ERROR)
    await served(broker, "dev-a", sciot_models)  # registered, with a cost model
    attacks = [
        (DeviceTopic.INFER, _infer_with({"device_ms": [1.0, math.nan, 1.0, 1.0, 1.0]})),
        (DeviceTopic.INFER, _infer_with({"rtt_ms": math.inf, "rtt_seq": 0})),
        (DeviceTopic.INFER, _infer_with({"rtt_ms": 1e190, "rtt_seq": 0})),
        (DeviceTopic.TIMINGS, _timings_with([1e190] * 25)),
        (DeviceTopic.TIMINGS, _timings_with([-math.inf] * 25)),
    ]
    rejected = service.counters.errors
    since = observer.mark()
    # Only dev-a itself may publish on its topics: the attack comes from its own account.
    async with MqttSession(broker.as_user("dev-a"), client_id="dev-a") as attacker:
        for topic, payload in attacks:
            await attacker.publish(device_topic("dev-a", topic, INSTANCE), payload, qos=1)
        await service.wait_until(
            lambda: service.counters.errors >= rejected + len(attacks), timeout=10
        )
    report = await observer.expect_message(ErrorReport, errors, since=since, timeout=10)
    assert report.code is ErrorCode.INVALID, report
    assert all(
        ErrorReport.decode(m.payload).code is ErrorCode.INVALID
        for m in observer.messages[since:]
        if m.topic == errors
    )
    # The device still offloads, and its cost model holds only values within the contract.
    await served(broker, "dev-a", sciot_models)
    record = service.registry.get("dev-a")
    assert record is not None and record.cost is not None
    cost = record.cost
    values = cost.device.values()
    assert values and all(math.isfinite(v) and 0 <= v <= TIMING_MAX_MS for v in values)
    assert math.isfinite(cost.link.latency_ms) and math.isfinite(cost.link.ms_per_byte)
