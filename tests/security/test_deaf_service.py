"""Hole 3 of the second security round: `sciot-mqtt health` stayed green while the service
was deaf (its subscriptions gone, e.g. by a session takeover, its stats still flowing). Now the
health check fails, and the service notices itself (its own ping does not come back) and
reconnects."""

from __future__ import annotations

from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.health import service_alive
from sciot_mqtt.protocol import ServiceStats, ServiceTopic, service_topic
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress


async def test_a_deaf_service_is_unhealthy_until_it_heals_itself(
    sciot_broker: BrokerAddress, sciot_service: Service, sciot_device: Device
) -> None:
    service = sciot_service
    interval = service.settings.stats_interval
    stats = service_topic(service.instance, ServiceTopic.STATS)
    async with MqttProbe(sciot_broker, stats, client_id="stats-watch") as watch:
        # What a session taken over does to the service: its subscriptions are gone while
        # its connection stays up.
        mqtt = service.mqtt
        assert mqtt is not None
        await mqtt.unsubscribe(*service.subscriptions())
        mark = watch.mark()
        # It notices only after `patience` stats intervals: a check within one interval of
        # going deaf fails, although stats keep coming.
        problem = await service_alive(sciot_broker, service.instance, timeout=interval)
        assert problem is not None and "did not answer" in problem
        await watch.expect_message(ServiceStats, stats, since=mark, timeout=5)
    await service.wait_until(lambda: service.deaf_reconnects == 1, timeout=10 * interval)
    await service.connected(timeout=10)
    assert await service_alive(sciot_broker, service.instance, timeout=10) is None
    # And it hears devices again: the device's next inference is answered.
    sciot_device.settings.split = 5
    await sciot_device.wait_until(lambda: sciot_device.mode == "offload", timeout=10)
    record = await sciot_device.infer(next(synthetic_images(seed=4)))
    assert record.path == "offload"
