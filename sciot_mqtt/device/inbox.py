"""What the service tells a device, and what the device keeps of it: its assignment, its split
decision, the last error, which service instances are online, and whether the assignment may
be offloaded on.

No I/O: `device.py` hands it every message received and does what it asks (a new birth, a
sooner heartbeat); results, echo replies and errors go on to the inference's `ServiceChannel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sciot_mqtt.device.offload import ServiceChannel
from sciot_mqtt.device.report import DeviceSummary
from sciot_mqtt.device.services import ServiceWatch
from sciot_mqtt.errors import ProtocolError
from sciot_mqtt.protocol import (
    Assign,
    Command,
    DeviceAddress,
    DeviceTopic,
    EchoReply,
    ErrorReport,
    InferResult,
    ServiceAddress,
    ServiceState,
    ServiceTopic,
    SplitDecision,
    device_topic,
    parse_topic,
    service_filter,
)
from sciot_mqtt.transport import Inbound

Reaction = Literal["announce", "heartbeat"]
"""What a message asks of the device: `announce` (state and birth again), or `heartbeat`
(its interval changed: wake the heartbeat up)."""


class ServiceInbox:
    """Applies what the service sends one device and keeps it."""

    def __init__(
        self,
        device_id: str,
        *,
        models: Sequence[str],
        max_payload: int,
        summary: DeviceSummary,
        log: Any,
    ) -> None:
        """`models`: those the device carries (an assignment of another is refused);
        `max_payload`: the largest result it accepts."""
        self.device_id = device_id
        self.models = tuple(models)
        self.max_payload = max_payload
        self.assignment: Assign | None = None
        self.decision: SplitDecision | None = None
        self.followed: SplitDecision | None = None  # the last decision that was not a probe
        self.last_error: ErrorReport | None = None
        self.services = ServiceWatch()
        # Whether the assignment may be offloaded on (topics.md, "Device modes"): only once an
        # assign answers this connection's birth, and again after a service restart or an
        # unanswered request. A retained assign is not enough: after a broker restart the
        # persisted service state may still say `online` for a service not back yet.
        self.live = False
        self._summary = summary
        self._log = log

    def topics(self) -> list[str]:
        """What it reads: the device's own topics from the service, and every instance's
        `state`."""
        own = (
            DeviceTopic.ASSIGN,
            DeviceTopic.SPLIT,
            DeviceTopic.RESULT,
            DeviceTopic.CMD,
            DeviceTopic.ERROR,
            DeviceTopic.ECHO_REPLY,
        )
        return [
            *(device_topic(self.device_id, kind) for kind in own),
            service_filter(ServiceTopic.STATE),
        ]

    @property
    def service_online(self) -> bool:
        """Whether the instance serving it (its assignment's) is online (topics.md, "Device
        modes"): another instance of a fleet being up does not serve this device."""
        assignment = self.assignment
        return assignment is not None and self.services.is_online(assignment.instance)

    def new_connection(self) -> None:
        """Connected (again): who is online is told anew, and the assignment is not live
        until an assign answers this connection's birth."""
        self.services.new_connection()
        self.live = False

    def unanswered(self) -> bool:
        """No result in time: the assignment is not live until the service answers a new
        birth. False when it was not live anyway."""
        if not self.live:
            return False
        self._summary.unanswered += 1
        self.live = False
        return True

    def receive(
        self, message: Inbound, *, session: int, channel: ServiceChannel | None
    ) -> Reaction | None:
        """Apply one message of the current connection (`session`); a message that breaks
        the contract is logged and dropped."""
        try:
            return self._dispatch(message, session, channel)
        except ProtocolError as error:
            self._log.warning(
                "message from service rejected",
                topic=message.topic,
                code=error.code.value,
                reason=error.reason,
            )
            if parse_topic(message.topic) == DeviceAddress(self.device_id, DeviceTopic.SPLIT):
                self._summary.decisions_rejected += 1
            return None

    def _dispatch(
        self, message: Inbound, session: int, channel: ServiceChannel | None
    ) -> Reaction | None:
        address = parse_topic(message.topic)
        if isinstance(address, ServiceAddress):
            if address.kind is ServiceTopic.STATE:
                serving = self.assignment.instance if self.assignment else None
                if not message.payload:
                    self.services.cleared(address.instance)
                    state = None
                else:
                    state = ServiceState.decode(message.payload)
                    if self.services.on_state(address.instance, state) and (
                        address.instance == serving
                    ):
                        # Its instance (re)started: until it answers a birth (it asks for one).
                        self.live = False
                if (state is None or not state.online) and channel is not None:
                    # Requests sent to an instance that is gone finish locally now, also
                    # those sent before a handover to another instance.
                    channel.abandon("service unavailable", instance=address.instance)
            return None
        if not isinstance(address, DeviceAddress) or address.device_id != self.device_id:
            return None
        kind = address.kind
        if kind is DeviceTopic.ASSIGN:
            if not message.payload:
                self.assignment = None
                return None
            return self._on_assign(Assign.decode(message.payload), session)
        elif kind is DeviceTopic.SPLIT:
            if not message.payload:
                self.decision = None
                return None
            self.decision = SplitDecision.decode(message.payload)
            if self.decision.mode != "probe":
                self.followed = self.decision
            self._summary.decisions += 1
        elif kind is DeviceTopic.RESULT:
            result = InferResult.decode(message.payload, max_bytes=self.max_payload)
            if channel is not None:
                channel.on_result(result, len(message.payload))
        elif kind is DeviceTopic.ECHO_REPLY:
            if channel is not None:
                reply = EchoReply.decode(message.payload)
                channel.on_echo_reply(reply, len(message.payload))
        elif kind is DeviceTopic.CMD:
            command = Command.decode(message.payload)
            if command.cmd == "rebirth":
                self._log.info("rebirth", reason=command.reason)
                self._summary.rebirths += 1
                return "announce"
        elif kind is DeviceTopic.ERROR:
            self.last_error = ErrorReport.decode(message.payload)
            self._summary.errors_received += 1
            if channel is not None:
                channel.on_error(self.last_error, len(message.payload))
            self._log.warning(
                "service rejected a message",
                code=self.last_error.code.value,
                topic=self.last_error.topic,
                reason=self.last_error.reason,
            )
        return None

    def _on_assign(self, assign: Assign, session: int) -> Reaction | None:
        if assign.model not in self.models:
            self._log.warning("assignment of a model this device lacks", model=assign.model)
            return None
        previous = self.assignment
        self.assignment = assign
        if assign.session == session:
            self.live = True
        self._summary.assignments += 1
        self._log.info(
            "assigned", model=assign.model, session=assign.session, current_session=session
        )
        if previous is None or previous.hb_interval_s != assign.hb_interval_s:
            return "heartbeat"
        return None
