"""The one adapter around amqtt: an MQTT 3.1.1 broker embedded in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from amqtt.errors import BrokerError

from sciot_mqtt.broker.amqtt_fixes import FixedBroker
from sciot_mqtt.broker.exposure import require_credentials_off_loopback
from sciot_mqtt.creds import PasswordFile
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import BrokerAddress

_log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 2.0


class EmbeddedBroker:
    """amqtt on `host:port` (port 0: a free port, read back after binding).

    Without `credentials_file` anyone may connect, so only a loopback `host` is accepted.
    With it (a Mosquitto password file, see `sciot_mqtt.creds`) clients log in and the
    project's ACLs apply, exactly as with the shipped Mosquitto configuration.

    A client's id must then be its account's name (`sciot_mqtt.protocol.accounts`), so no
    login can take over another's session; one that fails to log in changes nothing.
    `max_packet_size` closes the connection of a client that announces a larger packet,
    before its body is read (`amqtt_fixes`).

    Retained messages live in memory, so they are gone when the broker stops; use Mosquitto
    with persistence for deployments that must survive a broker restart.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        credentials_file: Path | str | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        require_credentials_off_loopback(host, credentials_file is not None, "the embedded broker")
        if credentials_file is not None:
            # Fail here, with our message, rather than deep inside amqtt's plugin loading.
            PasswordFile.load(credentials_file)
        self._credentials_file = credentials_file
        self._max_packet_size = max_packet_size
        self._host = host
        self._port = port
        self._broker: FixedBroker | None = None
        self._address: BrokerAddress | None = None

    @property
    def address(self) -> BrokerAddress:
        if self._address is None:
            raise RuntimeError("the embedded broker is not running")
        return self._address

    def _config(self) -> dict[str, Any]:
        # No $SYS plugin and no packet logger: they cost time per message and say nothing
        # our own stats do not.
        plugins: dict[str, Any]
        if self._credentials_file is None:
            plugins = {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            }
        else:
            plugins = {
                "sciot_mqtt.broker.amqtt_plugins.SciotAuthPlugin": {
                    "password_file": str(self._credentials_file)
                },
                "sciot_mqtt.broker.amqtt_plugins.SciotTopicPlugin": {},
            }
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:{self._port}"}},
            "plugins": plugins,
        }

    async def __aenter__(self) -> Self:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = FixedBroker(self._config(), max_packet_size=self._max_packet_size)
        amqtt_log = logging.getLogger("amqtt.broker")
        amqtt_log.setLevel(logging.CRITICAL)  # its start-up traceback would repeat our error
        try:
            await self._broker.start()
        except BrokerError as exc:
            self._broker = None
            raise ConfigurationError(
                f"the embedded broker cannot listen on {self._host}:{self._port} "
                f"({exc.__cause__}); "
                "if another broker (e.g. a system Mosquitto) has the port, serve through it with "
                "--external-broker, or pick another --port"
            ) from exc
        finally:
            amqtt_log.setLevel(logging.WARNING)
        server = self._broker._servers["default"].instance  # amqtt has no public accessor
        port = server.sockets[0].getsockname()[1] if self._port == 0 else self._port
        self._address = BrokerAddress(self._host, port)
        _log.debug("embedded broker listening on %s", self._address)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        broker, self._broker = self._broker, None
        self._address = None
        if broker is None:
            return
        try:
            # amqtt can wait seconds on clients that are still connected; our own state is
            # already published, so a bounded wait is enough before the listeners close.
            await asyncio.wait_for(broker.shutdown(), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            _log.warning("amqtt did not stop within %ss; closing its listeners", SHUTDOWN_TIMEOUT_S)
            for server in broker._servers.values():
                with contextlib.suppress(Exception):
                    await server.close_instance()
