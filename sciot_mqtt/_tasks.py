"""Task plumbing shared by the service and the device: owned tasks, clean stops, waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


async def run_until_stopped(
    stop: asyncio.Event, coros: dict[str, Coroutine[Any, Any, None]]
) -> None:
    """Run named coroutines until `stop` is set or one of them ends; then cancel the rest.

    An exception of a coroutine that ended is re-raised (a lost connection, typically), so
    the caller's reconnect loop sees it.
    """
    tasks = [asyncio.create_task(coro, name=name) for name, coro in coros.items()]
    stopper = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*tasks, stopper):
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
    for task in done:
        if task is not stopper and (exc := task.exception()) is not None:
            raise exc


async def finish(task: asyncio.Task[None] | None, timeout: float) -> None:
    """Let `task` end by itself within `timeout` seconds, else cancel it."""
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Changes:
    """Lets callers wait for a condition on state that changes as messages arrive."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._waiting = 0

    async def notify(self) -> None:
        # Called after every message and every inference; nearly always nobody waits.
        if self._waiting:
            async with self._condition:
                self._condition.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout), self._condition:
                await self._condition.wait_for(predicate)
        finally:
            self._waiting -= 1
