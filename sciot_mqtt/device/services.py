"""Which service instances a device sees online, from their retained `state` (and wills)."""

from __future__ import annotations

from sciot_mqtt.protocol import ServiceState


class ServiceWatch:
    """The service instances heard on the current connection, and whether any is online."""

    def __init__(self) -> None:
        self._online: dict[str, bool] = {}
        self._started_at: dict[str, float | None] = {}

    @property
    def any_online(self) -> bool:
        return any(self._online.values())

    def is_online(self, instance: str) -> bool:
        """Whether `instance` said it is online on this connection (its retained state)."""
        return self._online.get(instance, False)

    def new_connection(self) -> None:
        """Forget who was online: the broker tells again (retained) on subscribing."""
        self._online.clear()

    def cleared(self, instance: str) -> None:
        """Someone cleared the instance's retained state."""
        self._online.pop(instance, None)

    def on_state(self, instance: str, state: ServiceState) -> bool:
        """Apply an instance's state; True when it just came (back) online or restarted.

        A service (re)starting knows nothing of this connection yet, so the device waits for
        the answer to a birth (the service asks for one) before offloading again. The first
        state on a connection is not such news: it is the retained copy.
        """
        seen = instance in self._online  # earlier on this connection
        was_online = self._online.get(instance, False)
        restarted = self._started_at.get(instance) != state.started_at
        self._online[instance] = state.online
        if state.online:
            self._started_at[instance] = state.started_at
        return state.online and seen and (not was_online or restarted)
