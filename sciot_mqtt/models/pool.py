"""Threads that run model segments, each with interpreters of its own: a device's, a swarm's
shared ones, and the service's tail workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner

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

    def __init__(
        self, threads: int = 1, *, name: str = "compute", warm: Iterable[ModelPackage] = ()
    ) -> None:
        """`warm`: models whose interpreters every thread builds as soon as it starts."""
        self._warm = list(warm)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix=name, initializer=self._warm_up if self._warm else None
        )
        self._local = threading.local()
        self.threads = threads

    def _warm_up(self) -> None:
        for package in self._warm:
            self.runner(package).warm_up()

    async def start_all(self, timeout: float = 60.0) -> None:
        """Start (and so warm up) every thread now rather than on the first requests."""
        # A barrier of `threads` parties can only be passed by that many distinct threads.
        barrier = threading.Barrier(self.threads)
        await asyncio.gather(*(self.run(barrier.wait, timeout) for _ in range(self.threads)))

    def runner(self, package: ModelPackage) -> SegmentRunner:
        """This thread's runner for `package`; call it only from inside `run`."""
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
