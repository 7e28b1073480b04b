"""A session belongs to its account (issue 11, holes 1 and 2), on both brokers.

Hole 1: amqtt 0.12.1 touched the stored session of a client id before it checked the login,
so a client that failed to log in could leave the service connected but deaf, or plant a will
on its topics. Hole 2: a login could use any client id and so take over another account's
session. After every attack a well-behaved device is still assigned and served, and the
attacked session was never interrupted.
"""

from __future__ import annotations

import re

import pytest

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import ConnectionLostError
from sciot_mqtt.health import service_alive
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    DeviceState,
    DeviceTopic,
    ServiceState,
    ServiceTopic,
    device_topic,
    service_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import MqttSession
from tests.security.conftest import (
    HEALTH,
    INSTANCE,
    OPERATOR,
    SECOND,
    SERVICE,
    SHIPPED_CONF,
    SecuredBroker,
    device_on,
    served,
    service_settings,
)
from tests.security.raw_mqtt import Will, connect_once, connect_packet

STATE = service_topic(INSTANCE, ServiceTopic.STATE)
FORGED = ServiceState(online=False, instance="forged").encode()


async def _retained_state(broker: SecuredBroker) -> ServiceState:
    async with MqttProbe(broker.as_user(OPERATOR), STATE, client_id=OPERATOR) as probe:
        return await probe.expect_message(ServiceState, STATE, timeout=10)


async def test_a_failed_login_changes_no_session(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    broker = secured_broker
    await observer.expect_message(ServiceState, STATE, lambda s: s.online, timeout=10)
    since = observer.mark()
    plant = Will(STATE, FORGED)
    attacks = {
        # clean session: amqtt 0.12.1 deleted the live session, subscriptions and all
        "wrong password, clean": connect_packet(SERVICE, username=SERVICE, password="wrong"),
        # persistent session: it copied the will into the live session, then took it over
        "wrong password, resume, will": connect_packet(
            SERVICE, username=SERVICE, password="wrong", clean_session=False, will=plant
        ),
        "unknown account": connect_packet(SERVICE, username="dev-z", password="x" * 12),
        "another's password": connect_packet(
            SERVICE, username=SERVICE, password=broker.passwords["dev-a"], clean_session=False
        ),
        "anonymous, resume, will": connect_packet(SERVICE, clean_session=False, will=plant),
    }
    for name, packet in attacks.items():
        code = await connect_once(broker.address, packet)
        assert code not in (0,), f"{name}: accepted"

    await served(broker, "dev-a", sciot_models)
    # The service never lost its connection: no will fired, nothing announced it again.
    assert [m.topic for m in observer.messages[since:] if m.topic == STATE] == []
    state = await _retained_state(broker)
    assert state.online and state.instance == INSTANCE
    assert service.registry.get("dev-a") is not None


async def test_a_login_cannot_take_another_accounts_session(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    """dev-a, logged in correctly, claims the service's and dev-b's client ids. amqtt refuses
    the CONNECT; Mosquitto replaces the id by the username (`use_username_as_clientid`), so
    dev-a only ever replaces its own session. Neither victim is interrupted."""
    broker = secured_broker
    async with device_on(broker, "dev-b", sciot_models) as victim:
        await victim.wait_until(lambda: victim.mode == "offload", timeout=15)
        since = observer.mark()
        dev_b_state = device_topic("dev-b", DeviceTopic.STATE)
        for stolen in (SERVICE, "dev-b", "sciot-dev-dev-b", ""):
            for clean in (True, False):
                packet = connect_packet(
                    stolen,
                    username="dev-a",
                    password=broker.passwords["dev-a"],
                    clean_session=clean,
                )
                code = await connect_once(broker.address, packet)
                if broker.kind == "amqtt":
                    assert code != 0, f"{stolen!r}: amqtt accepted it"
                else:
                    # Accepted as client dev-a; an empty id without a clean session is
                    # refused by the protocol itself.
                    assert code == 0 or (stolen == "" and not clean), code
        # Both victims kept their one connection and still work.
        victim.settings.split = 5
        record = await victim.infer(next(synthetic_images(seed=5)), verify=True)
        assert record.path == "offload" and record.matches_local
        assert victim.summary().connects == 1 and victim.summary().disconnects == 0
        assert [m for m in observer.messages[since:] if m.topic == STATE] == []
        offline_b = [
            m
            for m in observer.messages[since:]
            if m.topic == dev_b_state and not DeviceState.decode(m.payload).online
        ]
        assert offline_b == [], "dev-b's will fired: its session was taken over"
    await served(broker, "dev-a", sciot_models)


async def test_a_client_id_is_its_account_name(secured_broker: SecuredBroker) -> None:
    """Each account connects as itself; amqtt refuses any other id outright."""
    broker = secured_broker
    for account in ("dev-a", SERVICE, HEALTH, OPERATOR):
        async with MqttSession(broker.as_user(account), client_id=account, timeout=5):
            pass
    if broker.kind == "amqtt":
        for account, other in (("dev-a", "dev-b"), ("dev-a", SERVICE), (SERVICE, "anything")):
            with pytest.raises(ConnectionLostError, match="refused"):
                async with MqttSession(broker.as_user(account), client_id=other, timeout=5):
                    pass


async def test_service_instances_and_health_checks_share_a_broker(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    """A second instance and the health check, each with its own account, run beside the
    service without taking its session, and it still serves devices."""
    broker = secured_broker
    await observer.expect_message(ServiceState, STATE, lambda s: s.online, timeout=10)
    since = observer.mark()
    second_state = service_topic("second", ServiceTopic.STATE)
    async with Service(
        service_settings("second"), broker.as_user(SECOND), packages=sciot_models
    ) as second:
        await second.connected(timeout=10)
        await observer.expect_message(
            ServiceState, second_state, lambda s: s.online, since=since, timeout=10
        )
        health = broker.as_user(HEALTH)
        for _ in range(2):
            assert await service_alive(health, INSTANCE, timeout=10) is None
        assert not second.internal_errors
    assert [m.topic for m in observer.messages[since:] if m.topic == STATE] == []
    await served(broker, "dev-a", sciot_models)


def test_shipped_mosquitto_conf_binds_client_ids_on_every_listener() -> None:
    text = SHIPPED_CONF.read_text()
    blocks = re.split(r"^listener ", text, flags=re.M)[1:]
    assert len(blocks) >= 2
    for block in blocks:
        assert re.search(r"^use_username_as_clientid true$", block, flags=re.M), block
    assert "per_listener_settings false" in text  # one password file and ACL for all
