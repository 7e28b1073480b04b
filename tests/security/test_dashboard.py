"""The dashboard's account on both brokers with logins: it reads every instance and device,
publishes nothing, and the page asks for its password."""

from __future__ import annotations

import contextlib
from typing import Any

from sciot_mqtt.dashboard import dashboard
from sciot_mqtt.errors import AccessDeniedError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    Command,
    DeviceTopic,
    ServiceTopic,
    SplitExplanation,
    device_topic,
    service_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import MqttSession
from tests.dashboard.conftest import browser  # noqa: F401  (the fixture)
from tests.security.conftest import DASHBOARD, INSTANCE, OPERATOR, SecuredBroker, device_on

READS = (
    "sciot/v1/service/+/state",
    "sciot/v1/service/+/stats",
    "sciot/v1/dev/+/explain",
)


async def test_the_dashboard_reads_the_fleet_and_publishes_nothing(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    address = secured_broker.as_user(DASHBOARD)
    async with (
        device_on(secured_broker, "dev-a", sciot_models) as device,
        MqttProbe(address, *READS, client_id=DASHBOARD) as dash,
    ):
        await device.wait_until(lambda: device.mode == "offload", timeout=15)
        explained = await dash.expect_message(
            SplitExplanation, device_topic("dev-a", DeviceTopic.EXPLAIN), timeout=10
        )
        assert (explained.instance, explained.model) == (INSTANCE, "fomo96")
        await dash.expect(service_topic(INSTANCE, ServiceTopic.STATS), timeout=10)
        await dash.expect(service_topic(INSTANCE, ServiceTopic.STATE), timeout=10)
        # Everything it might forge is dropped: a command, a decision, an explanation, a
        # service's state.
        forged = b"forged by the dashboard"
        for topic in (
            device_topic("dev-a", DeviceTopic.CMD),
            device_topic("dev-a", DeviceTopic.SPLIT),
            device_topic("dev-a", DeviceTopic.EXPLAIN),
            service_topic(INSTANCE, ServiceTopic.STATE),
        ):
            await dash.publish(topic, forged)
        # A marker the observer reads, sent after: once it is here, a forgery would be too.
        marker = Command(cmd="rebirth", reason="marker").encode()
        async with MqttSession(secured_broker.as_user(OPERATOR), client_id=OPERATOR) as op:
            await op.publish(device_topic("dev-b", DeviceTopic.CMD), marker)
        await observer.expect(device_topic("dev-b", DeviceTopic.CMD), timeout=10)
        assert forged not in [m.payload for m in observer.messages + dash.messages]
    # And it reads nothing else: no device's requests or results.
    async with MqttSession(address, client_id=DASHBOARD) as session:
        refused = []
        for wanted in ("#", "sciot/v1/dev/+/infer", "sciot/v1/dev/+/result"):
            with contextlib.suppress(AccessDeniedError):
                await session.subscribe(wanted)
                continue
            refused.append(wanted)
        if secured_broker.kind == "amqtt":  # Mosquitto grants and filters each delivery
            assert len(refused) == 3


async def test_the_page_asks_for_the_password_and_then_shows_the_fleet(
    secured_broker: SecuredBroker,
    service: Service,
    sciot_models: dict[str, ModelPackage],
    browser: Any,  # noqa: F811
) -> None:
    async with (
        device_on(secured_broker, "dev-a", sciot_models) as device,
        dashboard(secured_broker.address, INSTANCE, "127.0.0.1", 0) as server,
    ):
        await device.wait_until(lambda: device.mode == "offload", timeout=15)
        page = await browser.new_page()
        await page.goto(server.url)
        await page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        assert DASHBOARD in await page.locator("#login-account").inner_text()
        await page.fill("#password", "not-the-password")
        await page.click("#login button")
        await page.wait_for_selector("#broker[data-status='refused']", timeout=10_000)
        await page.fill("#password", secured_broker.passwords[DASHBOARD])
        await page.click("#login button")
        await page.wait_for_selector("#broker[data-status='connected']", timeout=10_000)
        assert await page.locator("#login").is_hidden()
        await page.locator("#devices tr[data-device='dev-a']").wait_for(timeout=10_000)
        await page.locator(f"#instances tr[data-instance='{INSTANCE}']").wait_for(timeout=10_000)
