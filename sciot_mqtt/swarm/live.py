"""The swarm's running totals, merged from its workers, and the live terminal view (rich)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.swarm.mix import DevicePlan, Mix
    from sciot_mqtt.transport import BrokerAddress

__all__ = ["LiveView", "SwarmTotals", "run_local_swarm"]

_log = structlog.get_logger("sciot.swarm")

_STATE_ORDER = ("joining", "offload", "local", "left", "crashed", "stopped")


class SwarmTotals:
    """Everything the live view shows, from the workers' snapshots."""

    def __init__(self, devices: int, duration: float | None, window_s: float = 5.0) -> None:
        self.devices = devices
        self.duration = duration
        self.started_at = time.monotonic()
        self._window_s = window_s
        self._states: dict[int, dict[str, int]] = {}
        self._started: dict[int, int] = {}
        self._recorded: dict[int, int] = {}
        self._churn: dict[int, tuple[int, int, int]] = {}
        self.splits: Counter[int] = Counter()
        self.paths: Counter[str] = Counter()
        self.sent_bytes = 0
        self._recent: collections.deque[tuple[float, list[float]]] = collections.deque()
        self.service: dict[str, float] = {}

    def add(self, worker: int, snapshot: Mapping[str, Any]) -> None:
        now = time.monotonic()
        self._states[worker] = dict(snapshot["states"])
        self._started[worker] = int(snapshot["started"])
        self._recorded[worker] = int(snapshot["recorded"])
        self._churn[worker] = (snapshot["joins"], snapshot["leaves"], snapshot["crashes"])
        self.splits.update({int(k): v for k, v in snapshot["splits"].items()})
        self.paths.update(snapshot["paths"])
        self.sent_bytes += int(snapshot["sent_bytes"])
        self._recent.append((now, list(snapshot["latencies"])))
        while self._recent and self._recent[0][0] < now - self._window_s:
            self._recent.popleft()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def states(self) -> dict[str, int]:
        merged: Counter[str] = Counter()
        for states in self._states.values():
            merged.update(states)
        return {s: merged[s] for s in _STATE_ORDER if merged[s]}

    @property
    def started(self) -> int:
        return sum(self._started.values())

    @property
    def recorded(self) -> int:
        return sum(self._recorded.values())

    def recent(self) -> dict[str, float]:
        """Rate and latency percentiles over the last few seconds."""
        latencies = [x for _, batch in self._recent for x in batch]
        span = self._window_s if self._recent else 1.0
        if self._recent:
            span = max(min(self._window_s, self.elapsed_s), 1.0)
        if not latencies:
            return {"rate": 0.0}
        arr = np.asarray(latencies)
        return {
            "rate": len(latencies) / span,
            "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)),
        }

    def line(self) -> str:
        """One log line's worth, for when there is no terminal."""
        r = self.recent()
        lat = f"p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms" if "p50" in r else "no results yet"
        states = ", ".join(f"{name} {count}" for name, count in self.states.items()) or "none"
        return (
            f"{self.elapsed_s:5.0f}s  devices (mode now): {states}  {r['rate']:.0f} inf/s  {lat}  "
            f"done {self.recorded}  fallbacks {self.paths['fallback']}  "
            f"failed {self.paths['failed']}"
        )


class LiveView:
    """A rich Live display of `SwarmTotals`; a context manager, refreshed by `update()`."""

    def __init__(self, totals: SwarmTotals) -> None:
        from rich.console import Console
        from rich.live import Live

        self.totals = totals
        self._console = Console(stderr=True)
        self._live = Live(console=self._console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        self.update()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self._live.__exit__(None, None, None)

    def update(self) -> None:
        self._live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        t = self.totals
        r = t.recent()
        summary = Table.grid(padding=(0, 2))
        summary.add_column(style="bold")
        summary.add_column()
        states = "  ".join(f"{name} {count}" for name, count in t.states.items()) or "-"
        # A device's mode is what the service told it last; where each result was computed is
        # counted below. A device told "local" still offloads now and then to measure its
        # link, so the two differ.
        summary.add_row("devices (mode now)", f"{t.devices}: {states}")
        summary.add_row("inferences/s", f"{r['rate']:.1f}")
        if "p50" in r:
            summary.add_row("latency", f"p50 {r['p50']:.1f} ms   p99 {r['p99']:.1f} ms")
        summary.add_row(
            "results (computed where)",
            f"{t.recorded} done: offloaded {t.paths['offload']}, local {t.paths['local']}, "
            f"fell back {t.paths['fallback']}, failed {t.paths['failed']}",
        )
        summary.add_row("in flight", str(t.started - t.recorded))
        if t.service:
            summary.add_row(
                "service",
                f"CPU {t.service.get('cpu_percent', 0):.0f} %   "
                f"RSS {t.service.get('rss_mb', 0):.0f} MB",
            )
        splits = Table(show_edge=False, pad_edge=False)
        top = sorted(t.splits.items())
        for split, _ in top:
            splits.add_column(str(split), justify="right")
        if top:
            splits.add_row(*(str(count) for _, count in top))
        # The table is as narrow as its columns: its explanation goes on a line of its own.
        legend = "inferences by split point (0 = send the raw input, N = all on the device):"
        parts: list[Any] = [summary, legend, splits]
        if t.duration:
            done = min(t.elapsed_s, t.duration)
            parts.append(ProgressBar(total=t.duration, completed=done, width=60))
            parts.append(f"{done:.0f} / {t.duration:.0f} s")
        return Group(*parts)


async def run_local_swarm(
    plans: list[DevicePlan],
    mix: Mix,
    packages: Mapping[str, ModelPackage],
    broker: BrokerAddress,
    stop: asyncio.Event,
) -> None:
    """`up --swarm N`: the devices in this process beside the service, until `stop`."""
    from sciot_mqtt.swarm.worker import SwarmWorker

    totals = SwarmTotals(len(plans), None)
    brokers = {link: broker for link in mix.links}
    live = sys.stderr.isatty()
    async with SwarmWorker(plans, mix, packages, brokers, emulate_links=True) as worker:
        with LiveView(totals) if live else contextlib.nullcontext() as view:
            last_line = time.monotonic()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                totals.add(0, worker.snapshot())
                if view is not None:
                    view.update()
                elif time.monotonic() - last_line >= 5:
                    _log.info("swarm", status=totals.line())
                    last_line = time.monotonic()
