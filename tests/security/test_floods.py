"""Floods from anyone on the broker: the service's replies stay within its budget, its
registry within its cap, and a well-behaved device keeps offloading through it all."""

from __future__ import annotations

import gc
import time

import psutil

from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Birth,
    DeviceTopic,
    ErrorReport,
    Heartbeat,
    device_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress
from tests.hardening.support import device_settings, service_settings


async def _steady_offloads(steady: Device) -> None:
    steady.settings.split = 5
    record = await steady.infer(next(synthetic_images(seed=3)), verify=True)
    assert (record.path, record.matches_local) == ("offload", True)


async def test_heartbeats_of_unknown_ids_get_a_bounded_number_of_rebirths(
    sciot_broker: BrokerAddress, sciot_models: dict[str, ModelPackage]
) -> None:
    packages = {"fomo96": sciot_models["fomo96"]}
    settings = service_settings(reply_rate=50.0)  # bursts of 100
    async with (
        Service(settings, sciot_broker, packages=packages) as service,
        MqttProbe(sciot_broker, "sciot/v1/dev/+/cmd", client_id="flood-watch") as watch,
        MqttProbe(sciot_broker, "sciot/v1/dev/none/none", client_id="flooder") as flooder,
        Device(device_settings("steady"), sciot_broker, packages=packages) as steady,
    ):
        await service.connected(timeout=10)
        await steady.wait_until(lambda: steady.mode == "offload", timeout=20)
        rx_before = service.counters.rx
        started = time.monotonic()
        for k in range(2000):
            hb = Heartbeat(seq=k, session=1, mode="offload")
            await flooder.publish(
                device_topic(f"ghost-{k % 1000}", DeviceTopic.HB), hb.encode(), qos=0
            )
        await service.wait_until(lambda: service.counters.rx >= rx_before + 2000, timeout=60)
        elapsed = time.monotonic() - started
        ghosts = [m for m in watch.messages if m.topic.startswith("sciot/v1/dev/ghost-")]
        # Without the budget every heartbeat would get its `cmd rebirth` (2,000).
        assert len(ghosts) <= 100 + 50 * elapsed + 5, (len(ghosts), elapsed)
        assert service.replies.refused >= 2000 - len(ghosts) - 50 * elapsed - 5
        assert len(service.registry) == 1  # heartbeats never create records
        await _steady_offloads(steady)
    assert service.internal_errors == []


async def test_births_beyond_the_cap_are_refused_and_memory_stays_bounded(
    sciot_broker: BrokerAddress, sciot_models: dict[str, ModelPackage]
) -> None:
    packages = {"fomo96": sciot_models["fomo96"]}
    # The flood's backlog delays the steady device's heartbeats too: tolerate that, so
    # what is measured is the cap, not heartbeat timing under load.
    settings = service_settings(max_devices=200, reply_rate=1e6, missed_heartbeats=40)
    flood = 5000
    me = psutil.Process()
    async with (
        Service(settings, sciot_broker, packages=packages) as service,
        MqttProbe(sciot_broker, "sciot/v1/dev/+/error", client_id="flood-watch") as watch,
        MqttProbe(sciot_broker, "sciot/v1/dev/none/none", client_id="flooder") as flooder,
        Device(device_settings("steady"), sciot_broker, packages=packages) as steady,
    ):
        await service.connected(timeout=10)
        await steady.wait_until(lambda: steady.mode == "offload", timeout=20)
        gc.collect()
        rss_before = me.memory_info().rss
        errors_before = service.counters.errors
        for k in range(flood):
            birth = Birth(
                protocol=PROTOCOL_VERSION, session=1, kind="x", models=["fomo96"], max_payload=4096
            )
            await flooder.publish(
                device_topic(f"fake-{k}", DeviceTopic.BIRTH), birth.encode(), qos=1
            )

        def accounted() -> int:
            # Every birth is refused or takes a place: a free one, or one of a fake that had
            # gone offline meanwhile (no heartbeats), forgotten to make room.
            refused = service.counters.errors - errors_before
            return refused + service.registry.evicted + len(service.registry) - 1

        await service.wait_until(lambda: accounted() == flood, timeout=120)
        gc.collect()
        grown_mb = (me.memory_info().rss - rss_before) / 2**20
        print(f"RSS grew {grown_mb:.1f} MB over {flood} births with max_devices=200")
        assert len(service.registry) == 200
        assert service.registry.get("steady") is not None
        refused_count = service.counters.errors - errors_before
        assert refused_count > flood / 2
        refused = [ErrorReport.decode(m.payload) for m in watch.messages if "/fake-" in m.topic]
        assert refused and {r.code.value for r in refused} == {"device_limit"}
        # Without the cap, 5,000 records cost about 100 MB (issue 11); with it, a few MB
        # (broker, probes and the test's own bookkeeping included).
        assert grown_mb < 40
        await _steady_offloads(steady)
    assert service.internal_errors == []
