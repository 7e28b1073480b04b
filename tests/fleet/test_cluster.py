"""The fleet on a real broker cluster: two aedes nodes sharing state through Redis, the devices
on one node and the service instances on the other (issue 16's acceptance; README,
"Deployment"). The same kill -9 failover as on one Mosquitto.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sciot_mqtt.models import ModelPackage
from sciot_mqtt.testing.plugin import DeviceFactory
from tests.fleet.cluster import AedesCluster
from tests.fleet.failover import kill_9_failover

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
