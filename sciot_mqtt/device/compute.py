"""Threads that run model segments for one device or for a whole swarm of them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage, SegmentRunner

__all__ = ["ComputePool"]

_T = TypeVar("_T")


class ComputePool:
    """A thread pool whose threads each keep their own LiteRT interpreters.

    LiteRT interpreters must stay on the thread that uses them, so every thread builds (once)
    a `SegmentRunner` per model the first time it runs one. One thread serves one device; a
    swarm shares a few threads among hundreds of devices, so their interpreters are built a
    few times instead of once per device. Emulated waits (a slow chip) are not spent here:
    the device awaits them on the event loop, so a sleeping device never holds a thread.
    """

    def __init__(self, threads: int = 1, *, name: str = "compute") -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._local = threading.local()
        self.threads = threads

    def runner(self, package: ModelPackage) -> SegmentRunner:
        """This thread's runner for `package`; call it only from inside `run`."""
        from sciot_mqtt.models import SegmentRunner

        runners: dict[str, SegmentRunner] | None = getattr(self._local, "runners", None)
        if runners is None:
            runners = self._local.runners = {}
        runner = runners.get(package.sha256)
        if runner is None:
            runner = runners[package.sha256] = SegmentRunner(package)
        return runner

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
