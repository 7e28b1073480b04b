"""The command line as a user runs it: real processes, signals, and a real broker."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sciot_mqtt.broker import free_port, until_accepting
from sciot_mqtt.device import Device
from sciot_mqtt.protocol import (
    Assign,
    DeviceTopic,
    ServiceState,
    ServiceStats,
    ServiceTopic,
    device_topic,
    service_topic,
)
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import BrokerAddress
from tests.processes import spawn

STATE = service_topic("edge", ServiceTopic.STATE)
STATS = service_topic("edge", ServiceTopic.STATS)


async def test_up_serves_then_stops_cleanly_on_sigterm(
    cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    argv = [*cli, "up", "--port", str(port), "--heartbeat-interval", "1", "--stats-interval", "1"]
    async with spawn(argv, cli_env, tmp_path, "up") as up:
        await asyncio.wait_for(until_accepting(BrokerAddress("127.0.0.1", port)), 20)
        async with MqttProbe(BrokerAddress("127.0.0.1", port), "sciot/v1/#") as probe:
            state = await probe.expect_message(ServiceState, STATE, lambda s: s.online, timeout=20)
            assert state.instance == "edge"
            async with MqttProbe(BrokerAddress("127.0.0.1", port), STATE, client_id="late") as late:
                assert (await late.expect(STATE)).retain

            mark = probe.mark()
            up.signal(signal.SIGTERM)
            await probe.expect_message(
                ServiceState, STATE, lambda s: not s.online, since=mark, timeout=5
            )
            assert await up.wait(timeout=5) == 0, up.output()
        assert '"service offline"' in up.output()


async def test_device_stopped_with_sigstop_goes_stale_and_returns(
    cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    broker = BrokerAddress("127.0.0.1", port)
    up_argv = [
        *cli,
        "up",
        "--port",
        str(port),
        "--heartbeat-interval",
        "1",
        "--stats-interval",
        "1",
    ]
    device_argv = [*cli, "device", "--id", "cam-7", "--port", str(port)]
    async with spawn(up_argv, cli_env, tmp_path, "up") as up:
        await asyncio.wait_for(until_accepting(broker), 20)
        async with (
            MqttProbe(broker, "sciot/v1/#") as probe,
            spawn(device_argv, cli_env, tmp_path, "device") as device,
        ):
            assign = await probe.expect_message(
                Assign, device_topic("cam-7", DeviceTopic.ASSIGN), timeout=15
            )
            assert assign.model == "fomo96" and assign.hb_interval_s == 1.0
            await probe.expect_message(ServiceStats, STATS, lambda s: s.devices.online == 1)

            device.signal(signal.SIGSTOP)
            mark = probe.mark()
            stale = await probe.expect_message(
                ServiceStats, STATS, lambda s: s.devices.stale == 1, since=mark, timeout=3 * 1 + 2
            )
            assert stale.devices.online == 0

            device.signal(signal.SIGCONT)
            mark = probe.mark()
            await probe.expect_message(
                ServiceStats,
                STATS,
                lambda s: s.devices.online == 1 and s.devices.stale == 0,
                since=mark,
                timeout=5,
            )

            device.signal(signal.SIGINT)
            assert await device.wait(timeout=5) == 0, device.output()
            summary = device.last_json_line()
            assert summary["device_id"] == "cam-7"
            assert summary["assignments"] == 1 and summary["connects"] == 1
            assert isinstance(summary["heartbeats"], int) and summary["heartbeats"] >= 3
        up.signal(signal.SIGTERM)
        assert await up.wait(timeout=5) == 0


async def test_service_killed_and_restarted_rebuilds_from_retained_state(
    sciot_broker: BrokerAddress,
    sciot_device_factory: DeviceFactory,
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """kill -9 of the service: devices fall back to local; a new service takes them back."""
    argv = [
        *cli,
        "up",
        "--external-broker",
        "--port",
        str(sciot_broker.port),
        "--heartbeat-interval",
        "0.5",
        "--stats-interval",
        "0.5",
    ]
    async with MqttProbe(sciot_broker, "sciot/v1/#") as probe:
        async with spawn(argv, cli_env, tmp_path, "first") as first:
            await probe.expect_message(ServiceState, STATE, lambda s: s.online, timeout=20)
            devices: list[Device] = [await sciot_device_factory(f"k{i}") for i in range(2)]
            for device in devices:
                # Room for one reconnect: amqtt now and then leaves a SUBSCRIBE unanswered.
                await device.wait_until(lambda d=device: d.mode == "offload", timeout=20)
            first.signal(signal.SIGKILL)
            await first.wait(timeout=5)
        # The broker publishes the service's will; devices carry on alone.
        await probe.expect_message(ServiceState, STATE, lambda s: not s.online, timeout=20)
        for device in devices:
            await device.wait_until(lambda d=device: d.mode == "local", timeout=5)

        mark = probe.mark()
        async with spawn(argv, cli_env, tmp_path, "second") as second:
            stats = await probe.expect_message(
                ServiceStats, STATS, lambda s: s.devices.online == 2, since=mark, timeout=20
            )
            assert stats.devices.offline == 0
            for device in devices:
                await device.wait_until(lambda d=device: d.mode == "offload", timeout=10)
                summary = device.summary()
                assert summary.rebirths == 1 and summary.fallbacks == 1 and summary.connects == 1
            second.signal(signal.SIGTERM)
            assert await second.wait(timeout=5) == 0
