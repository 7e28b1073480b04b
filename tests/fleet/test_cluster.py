"""The fleet on a real broker cluster: two aedes nodes sharing state through Redis, the devices
on one node and the service instances on the other (issue 16's acceptance; README,
"Deployment"). The same kill -9 failover as on one Mosquitto.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from tests.fleet.cluster import HEARTBEAT_MS, AedesCluster
from tests.fleet.failover import (
    instance_settings,
    instances,
    kill_9_failover,
    on,
    placement,
    until_each,
    up_argv,
)
from tests.processes import spawn

pytestmark = pytest.mark.asyncio


async def test_kill_9_of_an_instance_on_a_cluster_devices_move_within_5_s_and_nothing_is_lost(
    aedes: AedesCluster,
    sciot_models: dict[str, ModelPackage],
    sciot_device_factory: DeviceFactory,
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    devices_node, instances_node = aedes.nodes
    await kill_9_failover(
        devices_node,
        instances_node,
        sciot_models,
        sciot_device_factory,
        cli,
        cli_env,
        tmp_path,
    )
    # Both nodes and Redis lived through it (a crash of one would have failed the scenario
    # anyway; this says which).
    for name, child in aedes.processes.items():
        assert child.process.returncode is None, f"{name} exited: {child.output()[-2000:]}"


async def test_kill_9_of_a_broker_node_a_survivor_publishes_its_instances_wills(
    aedes: AedesCluster,
    sciot_models: dict[str, ModelPackage],
    sciot_device_factory: DeviceFactory,
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A node dies, not an instance: the sockets of its clients die with it, so no node sees
    them go; the survivor publishes the dead node's wills (kept in Redis) once the node has
    been silent for three of its heartbeats (checked every four). The devices on the survivor
    then move to the instance there."""
    node_a, node_b = aedes.nodes
    state_topic = service_topic("far", ServiceTopic.STATE)
    async with (
        MqttProbe(node_a, "sciot/v1/service/+/state", client_id="watch") as watch,
        instances(node_a, sciot_models, instance_settings("near")),
        spawn(up_argv(cli, node_b, "far", sciot_models, capacity=4), cli_env, tmp_path, "far"),
    ):
        await watch.expect_message(ServiceState, state_topic, lambda s: s.online, timeout=60)
        devices = [await sciot_device_factory(f"dev-{i}", broker=node_a) for i in range(6)]
        await until_each(devices, on({"near", "far"}), 30)
        assert any(placement([d])[d.device_id] == "far" for d in devices), placement(devices)
        mark = watch.mark()
        aedes.processes["aedes-b"].signal(signal.SIGKILL)
        # Bounded by the cluster's heartbeat: 3 silent ones, then the next check (every 4),
        # with 3 more for a loaded machine.
        bound = (3 + 4 + 3) * HEARTBEAT_MS / 1000
        await watch.expect_message(
            ServiceState, state_topic, lambda s: not s.online, since=mark, timeout=bound
        )
        await until_each(devices, on({"near"}), 10)
