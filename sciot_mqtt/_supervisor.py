"""Keeping one broker connection: serve it, reconnect with backoff after a loss, until stopped.

The service and the device share this: each serves one connection at a time, retries a lost
connection after a backoff, and stops for good when the broker refuses its account (retrying
a wrong password forever would only fill logs and the broker's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from sciot_mqtt._tasks import Changes, finish
from sciot_mqtt.errors import AccessDeniedError, ConnectionLostError
from sciot_mqtt.transport import Backoff

__all__ = ["ConnectionSupervisor"]


class ConnectionSupervisor:
    """Runs `serve_once(backoff)` again and again in one owned task.

    `serve_once` connects, serves until the connection drops (`ConnectionLostError`) or
    `stopping` is set, and resets the backoff once it is connected. A refused login
    (`AccessDeniedError`) ends the task and is kept in `failure`.
    """

    def __init__(
        self,
        serve_once: Callable[[Backoff], Awaitable[None]],
        *,
        backoff: Backoff,
        changes: Changes,
        log: Any,
        who: str,
        name: str,
        lost_event: str = "broker connection lost",
        lost_level: str = "warning",
    ) -> None:
        self.stopping = asyncio.Event()
        # Set when the broker refused the account: it stopped for good (see `ended`).
        self.failure: AccessDeniedError | None = None
        self._serve_once = serve_once
        self._backoff = backoff
        self._changes = changes
        self._log = log
        self._who = who
        self._name = name
        self._lost_event = lost_event
        self._lost_level = lost_level
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self._who} already running")
        self._task = asyncio.create_task(self._run(), name=self._name)

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def alive(self) -> bool:
        """True while it runs (started, not stopped, not ended by itself)."""
        return self._task is not None and not self._task.done()

    async def ended(self) -> None:
        """Return when it stopped by itself (`failure` says why) or was stopped."""
        task = self._task
        if task is not None:
            await asyncio.wait({task})

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask `serve_once` to leave cleanly; cancel it if it takes longer than `timeout`."""
        self.stopping.set()
        task, self._task = self._task, None
        await finish(task, timeout=timeout)

    async def kill(self) -> None:
        """End at once, without the clean leave (a crash)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionLostError):
                await task
        self.stopping.set()

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._serve_once(self._backoff)
                self._backoff.reset()
            except AccessDeniedError as exc:
                self.failure = exc
                self._log.error(f"the broker refused the {self._who}; not retrying", error=str(exc))
                await self._changes.notify()
                return
            except ConnectionLostError as exc:
                delay = self._backoff.next()
                log = getattr(self._log, self._lost_level)
                log(self._lost_event, error=str(exc), retry_in_s=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
