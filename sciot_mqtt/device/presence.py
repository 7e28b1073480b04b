"""What a device says of itself (topics.md, "Device lifecycle"): its retained `state` and the
will that says it is gone, its `birth`, and its heartbeats, each with the session of the
connection they describe.

`device.py` says when: on every connection, when the service asks for a birth, and when it
leaves cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from sciot_mqtt import __version__
from sciot_mqtt.device.report import DeviceSummary
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    U32_MAX,
    Birth,
    DeviceMode,
    DeviceState,
    DeviceTopic,
    Heartbeat,
    device_topic,
)
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.transport import LastWill, MqttSession


def initial_session() -> int:
    """Seed the session counter from the clock so a restarted process still counts upward.

    Firmware keeps its counter in non-volatile storage instead (topics.md, "Sessions").
    """
    return int(time.time() * 1000) & U32_MAX


class Presence:
    """The state, birth and heartbeats of one device."""

    def __init__(self, settings: DeviceSettings, summary: DeviceSummary) -> None:
        self.device_id = settings.id
        self._settings = settings
        self._summary = summary
        self._hb_seq = 0
        self._hb_wake = asyncio.Event()

    def will(self, session: int) -> LastWill:
        """What the broker publishes for the device when its connection dies."""
        return LastWill(self._state_topic, self._gone(session))

    async def announce(self, mqtt: MqttSession, session: int) -> None:
        """`state` online, then `birth`: the order topics.md fixes."""
        state = DeviceState(online=True, session=session)
        await mqtt.publish(self._state_topic, state.encode(), qos=1, retain=True)
        birth = Birth(
            protocol=PROTOCOL_VERSION,
            session=session,
            kind=self._settings.kind,
            models=list(self._settings.models),
            max_payload=self._settings.max_payload,
            fw=f"sciot-mqtt {__version__}",
        )
        await mqtt.publish(device_topic(self.device_id, DeviceTopic.BIRTH), birth.encode(), qos=1)

    async def leave(self, mqtt: MqttSession, session: int) -> None:
        """Leaving cleanly: the will's retained `online: false`, said by the device itself."""
        await mqtt.publish(self._state_topic, self._gone(session), qos=1, retain=True)

    def interval_changed(self) -> None:
        """A new assignment may shorten the interval: the next heartbeat goes now."""
        self._hb_wake.set()

    async def heartbeats(
        self,
        mqtt: MqttSession,
        session: int,
        mode: Callable[[], DeviceMode],
        interval: Callable[[], float],
    ) -> None:
        """Heartbeats of this connection, saying the device's `mode`, every `interval` s."""
        while True:
            hb = Heartbeat(seq=self._hb_seq, session=session, mode=mode())
            await mqtt.publish(device_topic(self.device_id, DeviceTopic.HB), hb.encode(), qos=0)
            self._hb_seq = (self._hb_seq + 1) & U32_MAX
            self._summary.heartbeats += 1
            self._hb_wake.clear()
            # A new assignment may shorten the interval: wake up for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hb_wake.wait(), interval())

    @property
    def _state_topic(self) -> str:
        return device_topic(self.device_id, DeviceTopic.STATE)

    @staticmethod
    def _gone(session: int) -> bytes:
        return DeviceState(online=False, session=session).encode()
