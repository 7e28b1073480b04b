from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sciot_mqtt.transport import BrokerAddress


async def until_accepting(
    address: BrokerAddress, *, still_starting: Callable[[], bool] = lambda: True
) -> None:
    """Return once `address` accepts TCP connections; wrap in a timeout.

    Brokers started as processes print their readiness late or not at all, so the listening
    socket is the event to wait on. `still_starting` returning False ends the wait early.
    """
    while True:
        if not still_starting():
            raise RuntimeError(f"the process serving {address} exited")
        try:
            _, writer = await asyncio.open_connection(address.host, address.port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
