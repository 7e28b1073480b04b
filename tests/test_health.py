"""`sciot-mqtt health` means serving: a ping answered through the service's subscriptions.
(A deaf service failing it is a security regression test: tests/security/test_deaf_service.py.)"""

from __future__ import annotations

from sciot_mqtt.health import service_alive
from sciot_mqtt.service import Service
from sciot_mqtt.transport import BrokerAddress


async def test_a_serving_service_answers(
    sciot_broker: BrokerAddress, sciot_service: Service
) -> None:
    assert await service_alive(sciot_broker, sciot_service.instance, timeout=10) is None
    assert await service_alive(sciot_broker, "nobody", timeout=1.5) == (
        "service 'nobody' did not answer a ping within 1.5 s"
    )
