"""The dashboard's one broker connection, shared by every browser tab: it logs in as the
read-only `sciot-dashboard-{instance}` account, reads every instance's `state` and `stats`
and every device's `explain` into a `FleetState`, and reconnects when the broker goes away.

A broker that requires logins refuses the first, anonymous attempt; the feed then waits for
the password, which the page asks for (`login`), and keeps it in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from types import TracebackType
from typing import Literal, Self

import structlog

from sciot_mqtt.errors import AccessDeniedError, ConnectionLostError
from sciot_mqtt.protocol import DeviceTopic, ServiceTopic, device_filter
from sciot_mqtt.protocol.accounts import dashboard_client_id
from sciot_mqtt.protocol.topics import NAMESPACE
from sciot_mqtt.transport import Backoff, BrokerAddress, Credentials, MqttSession

from .state import FleetState

FILTERS = (
    f"{NAMESPACE}/service/+/{ServiceTopic.STATE.value}",
    f"{NAMESPACE}/service/+/{ServiceTopic.STATS.value}",
    device_filter(DeviceTopic.EXPLAIN),
)

Status = Literal["connecting", "connected", "login", "refused", "disconnected"]

_log = structlog.get_logger("sciot.dashboard")


class BrokerFeed:
    """Reads the fleet from the broker until closed; `changed` is set on every update."""

    def __init__(self, broker: BrokerAddress, instance: str, state: FleetState) -> None:
        """`broker` as the service reaches it (host, port, TLS); its login is not used:
        the dashboard has an account of its own."""
        self.broker = dataclasses.replace(broker, credentials=None)
        self.account = dashboard_client_id(instance)
        self.state = state
        self.status: Status = "connecting"
        self.detail = ""
        self.changed = asyncio.Event()
        self._password: str | None = None
        self._password_given = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="dashboard-feed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def login(self, password: str) -> None:
        """The dashboard account's password, as typed into the page: try it now."""
        self._password = password
        self._password_given.set()

    def _set_status(self, status: Status, detail: str = "") -> None:
        self.status, self.detail = status, detail
        self.state.version += 1
        self.changed.set()

    async def _run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=5.0)
        while True:
            credentials = (
                Credentials(self.account, self._password) if self._password is not None else None
            )
            address = dataclasses.replace(self.broker, credentials=credentials)
            self._password_given.clear()  # a password typed from now on is tried next
            try:
                async with MqttSession(address, client_id=self.account, keepalive=10) as session:
                    await session.subscribe(*FILTERS, qos=1)
                    backoff.reset()
                    self._set_status("connected")
                    async for message in session.messages():
                        if self.state.apply(message.topic, message.payload):
                            self.changed.set()
            except AccessDeniedError as exc:
                # Refused login (or a subscription the ACL denies): ask the page for the
                # password, and wait for one before trying again.
                wrong = self._password is not None
                self._set_status("refused" if wrong else "login", str(exc))
                _log.info("dashboard needs the password of its account", account=self.account)
                await self._password_given.wait()
                continue
            except ConnectionLostError as exc:
                self._set_status("disconnected", str(exc))
            await asyncio.sleep(backoff.next())
