"""Many simulated devices in one process: full Python devices sharing model threads.

Each device is a real `Device` (its own MQTT connection, will, heartbeats, decisions); what
they share is a `ComputePool`, so a few threads with their own interpreters serve hundreds
of devices. `SwarmWorker` runs a list of `DevicePlan`s with a workload and churn and records
every inference as a `Row`; the swarm command runs one worker per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

import numpy as np
import structlog

from sciot_mqtt._tasks import finish
from sciot_mqtt.device import Device
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.device.inputs import SyntheticInputs
from sciot_mqtt.models.pool import ComputePool
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.swarm.mix import DevicePlan, Mix, Workload
from sciot_mqtt.transport import BrokerAddress

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

__all__ = ["ROW_FIELDS", "Row", "SwarmWorker"]

_log = structlog.get_logger("sciot.swarm")

_INPUT_POOL = 16

DeviceState = Literal["joining", "offload", "local", "left", "crashed", "stopped"]
Path_ = Literal["offload", "local", "fallback", "failed"]


@dataclass(frozen=True)
class Row:
    """One inference, as the report's CSV has it. Times in ms, `t_s` since the swarm began."""

    device: str
    compute: str
    link: str
    t_s: float
    seq: int
    split: int
    path: Path_
    reason: str
    sent_bytes: int
    queue_ms: float
    device_ms: float
    transfer_ms: float | None
    edge_ms: float | None
    total_ms: float
    ok: bool | None
    model: str = ""
    result: str = ""  # the output in one word: best class, objects found, or "raw"


ROW_FIELDS = tuple(Row.__dataclass_fields__)


def _kind(compute: str) -> str:
    """The kind a device announces in its birth: the chip its compute profile emulates
    (`esp32s3:0.05` -> `esp32s3`, `chip.json` -> `chip`), as a dashboard shows it."""
    name = compute.split(":", 1)[0]
    return (name.removesuffix(".json").rsplit("/", 1)[-1] or "swarm")[:64]


@dataclass
class _Window:
    """What happened since the last snapshot."""

    completed: int = 0
    latencies: list[float] = field(default_factory=list)
    splits: Counter[int] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    sent_bytes: int = 0


def arrivals(workload: Workload, rng: random.Random, start: float) -> Iterator[float]:
    """Arrival times (on the loop's clock) of one device's requests."""
    rate = workload.rate_hz
    if workload.arrivals == "fixed":
        t = start + rng.uniform(0, 1 / rate)  # spread the devices' phases
        while True:
            yield t
            t += 1 / rate
    elif workload.arrivals == "poisson":
        t = start
        while True:
            t += rng.expovariate(rate)
            yield t
    else:
        burst_rate = rate / workload.burst_size
        t = start + rng.uniform(0, 1 / burst_rate)
        while True:
            for _ in range(workload.burst_size):
                yield t
            t += rng.expovariate(burst_rate)


class SwarmWorker:
    """Runs devices until `stop()`; an async context manager.

    `brokers` maps a link profile to the address its devices connect to (a proxy in proxy
    mode); `emulate_links` makes each device emulate its link in process instead.
    """

    def __init__(
        self,
        plans: list[DevicePlan],
        mix: Mix,
        packages: Mapping[str, ModelPackage],
        brokers: Mapping[str, BrokerAddress],
        *,
        emulate_links: bool,
        started_at: float | None = None,
        threads: int = 2,
        verify_every: int = 10,
        seed: int = 0,
        device_log_level: str = "warning",
    ) -> None:
        self.plans = plans
        self.mix = mix
        self.packages = dict(packages)
        self.brokers = dict(brokers)
        self.emulate_links = emulate_links
        self.rows: list[Row] = []
        self.started = 0
        self.states: dict[str, DeviceState] = {p.id: "joining" for p in plans}
        self.joins = 0
        self.leaves = 0
        self.crashes = 0
        self._verify_every = verify_every
        self._device_log_level = device_log_level
        self._rng = random.Random(seed)
        self._clock_zero = started_at if started_at is not None else time.time()
        self._compute = ComputePool(threads, name="swarm")
        self._stopping = asyncio.Event()
        self._events: dict[str, asyncio.Queue[str]] = {p.id: asyncio.Queue() for p in plans}
        self._tasks: list[asyncio.Task[None]] = []
        self._window = _Window()
        self._devices: dict[str, Device] = {}
        self._progress = asyncio.Event()
        # Rendering a scene costs more than a host-speed device's whole head: draw a few
        # inputs per model once, quantized, and let the devices take turns with them.
        source = SyntheticInputs(seed)
        pool = min(len(plans), _INPUT_POOL)
        self._inputs = {
            model_id: [package.quantize_input(source.next_for(package)) for _ in range(pool)]
            for model_id, package in self.packages.items()
        }

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        loop_zero = asyncio.get_running_loop().time() - (time.time() - self._clock_zero)
        for plan in self.plans:
            # Joins are spread over the whole swarm, not over this worker's share of it.
            delay = max(0.0, plan.join_at_s - (time.time() - self._clock_zero))
            self._tasks.append(
                asyncio.create_task(self._life(plan, loop_zero, delay), name=f"swarm-{plan.id}")
            )
        if self.mix.churn.leave_per_min or self.mix.churn.crash_per_min:
            self._tasks.append(asyncio.create_task(self._churn(), name="swarm-churn"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop arrivals, let in-flight inferences finish, leave cleanly."""
        self._stopping.set()
        timeout = drain_timeout or self.mix.result_timeout + 10
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._compute.close()

    @property
    def lost(self) -> int:
        """Inferences started but neither answered, finished locally, nor failed with a reason."""
        return self.started - len(self.rows)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds; checked after every recorded inference and every
        change of a device's state."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._progress.clear()
                await self._progress.wait()

    def snapshot(self) -> dict[str, object]:
        """Counters now and the window since the last snapshot (which it resets)."""
        window, self._window = self._window, _Window()
        return {
            "t_s": time.time() - self._clock_zero,
            "states": dict(Counter(self.states.values())),
            "started": self.started,
            "recorded": len(self.rows),
            "completed": window.completed,
            "latencies": [round(x, 3) for x in window.latencies],
            "splits": {str(k): v for k, v in window.splits.items()},
            "paths": dict(window.paths),
            "sent_bytes": window.sent_bytes,
            "joins": self.joins,
            "leaves": self.leaves,
            "crashes": self.crashes,
        }

    # --- one device's life ----------------------------------------------------------------

    def _settings(self, plan: DevicePlan) -> DeviceSettings:
        broker = self.brokers[plan.link]
        return DeviceSettings(
            _env_file=None,  # type: ignore[call-arg]
            id=plan.id,
            host=broker.host,
            port=broker.port,
            kind=_kind(plan.compute),
            models=list(self.packages),
            network=plan.link if self.emulate_links else "loopback",
            profile=plan.compute,
            emulation_seed=plan.seed,
            split=self.mix.split,
            result_timeout=self.mix.result_timeout,
            heartbeat_interval=self.mix.heartbeat_interval,
            log_level=self._device_log_level,
        )

    async def _life(self, plan: DevicePlan, loop_zero: float, join_delay: float) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(plan.seed)
        turns = itertools.count(plan.index)
        settings = self._settings(plan)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), join_delay)
        while not self._stopping.is_set():
            device = Device(
                settings,
                packages=self.packages,
                compute=self._compute,
                emulation=Emulation.from_settings(settings),
            )
            self._devices[plan.id] = device
            self.states[plan.id] = "joining"
            self.joins += 1
            await device.__aenter__()
            watcher = asyncio.create_task(self._watch(plan.id, device), name=f"watch-{plan.id}")
            try:
                event = await self._run_workload(plan, device, rng, turns, loop_zero)
            except asyncio.CancelledError:
                await device.crash()  # cancelled past the drain timeout: no time to leave
                raise
            finally:
                await finish(watcher, timeout=1)
            if event == "crash":
                await device.crash()
                self.crashes += 1
                self.states[plan.id] = "crashed"
                self._progress.set()
            else:
                await device.stop()
                if event == "leave":
                    self.leaves += 1
                    self.states[plan.id] = "left"
                else:
                    self.states[plan.id] = "stopped"
                self._progress.set()
            if event == "stop":
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.mix.churn.rejoin_after_s)
            # A device that comes back starts its workload afresh, from now.
            loop_zero = loop.time() - (time.time() - self._clock_zero)

    async def _watch(self, device_id: str, device: Device) -> None:
        def state() -> DeviceState:
            if device.mode == "offload":
                return "offload"
            return "local" if device.connected else "joining"

        while True:
            now = self.states[device_id] = state()
            self._progress.set()
            await device.wait_until(lambda now=now: state() != now, timeout=3600)  # type: ignore[misc]

    async def _run_workload(
        self,
        plan: DevicePlan,
        device: Device,
        rng: random.Random,
        turns: Iterator[int],
        loop_zero: float,
    ) -> str:
        """Serve arrivals until the swarm stops or a churn event; returns which."""
        loop = asyncio.get_running_loop()
        events = self._events[plan.id]
        stop_wait: asyncio.Future[object] = asyncio.ensure_future(self._stopping.wait())
        event_wait: asyncio.Future[object] = asyncio.ensure_future(events.get())
        try:
            for due in arrivals(self.mix.workload, rng, loop.time()):
                wait = due - loop.time()
                if wait > 0:
                    done, _ = await asyncio.wait(
                        [stop_wait, event_wait], timeout=wait, return_when="FIRST_COMPLETED"
                    )
                    if stop_wait in done:
                        return "stop"
                    if event_wait in done:
                        return str(event_wait.result())
                elif self._stopping.is_set():
                    return "stop"
                inference: asyncio.Future[object] = asyncio.ensure_future(
                    self._infer(plan, device, self._input_for(device, next(turns)), due, loop_zero)
                )
                # A clean leave or the end of the run waits for the inference; a crash not.
                done, _ = await asyncio.wait([inference, event_wait], return_when="FIRST_COMPLETED")
                if event_wait in done and event_wait.result() == "crash":
                    inference.cancel()
                    self._record_failure(plan, device, due, loop_zero, "device crashed")
                    with contextlib.suppress(asyncio.CancelledError):
                        await inference
                    return "crash"
                await inference
                if event_wait.done():
                    return str(event_wait.result())
            raise AssertionError("arrivals never end")
        finally:
            stop_wait.cancel()
            event_wait.cancel()

    def _input_for(self, device: Device, turn: int) -> np.ndarray:
        inputs = self._inputs[device.model_package().model_id]
        return inputs[turn % len(inputs)]

    async def _infer(
        self,
        plan: DevicePlan,
        device: Device,
        data: np.ndarray,
        due: float,
        loop_zero: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue_ms = max(0.0, (loop.time() - due) * 1000)
        self.started += 1
        verify = self._verify_every > 0 and self.started % self._verify_every == 0
        try:
            record = await device.infer(data, verify=verify)
        except asyncio.CancelledError:
            raise  # a crash: the caller records it
        except Exception as exc:  # recorded, never lost: the report says why it failed
            _log.warning("inference failed", device_id=plan.id, error=repr(exc))
            self._record_failure(plan, device, due, loop_zero, f"error: {exc!r}")
            return
        transfer = None
        if record.rtt_ms is not None:
            transfer = max(0.0, record.rtt_ms - (record.service_ms or 0.0))
        row = Row(
            device=plan.id,
            compute=plan.compute,
            link=plan.link,
            t_s=round(due - loop_zero, 4),
            seq=record.seq,
            split=record.split,
            path=record.path,
            reason=record.reason,
            sent_bytes=record.sent_bytes,
            queue_ms=round(queue_ms, 3),
            device_ms=round(record.head_ms, 3),
            transfer_ms=None if transfer is None else round(transfer, 3),
            edge_ms=None if record.edge_ms is None else round(record.edge_ms, 3),
            total_ms=round(record.total_ms, 3),
            ok=record.matches_local,
            model=device.model_package().model_id,
            result=record.result.top,
        )
        self._add(row)

    def _record_failure(
        self, plan: DevicePlan, device: Device, due: float, loop_zero: float, reason: str
    ) -> None:
        self._add(
            Row(
                device=plan.id,
                compute=plan.compute,
                link=plan.link,
                t_s=round(due - loop_zero, 4),
                seq=-1,
                split=-1,
                path="failed",
                reason=reason,
                sent_bytes=0,
                queue_ms=0.0,
                device_ms=0.0,
                transfer_ms=None,
                edge_ms=None,
                total_ms=0.0,
                ok=False,
            )
        )

    def _add(self, row: Row) -> None:
        self.rows.append(row)
        self._progress.set()
        w = self._window
        w.completed += 1
        w.paths[row.path] += 1
        if row.path != "failed":
            w.latencies.append(row.total_ms)
            w.splits[row.split] += 1
        w.sent_bytes += row.sent_bytes

    # --- churn ----------------------------------------------------------------------------

    async def _churn(self) -> None:
        churn = self.mix.churn
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)
            present = [d for d, s in self.states.items() if s in ("offload", "local")]
            for device_id in present:
                draw = self._rng.random() * 60
                if draw < churn.crash_per_min:
                    self._events[device_id].put_nowait("crash")
                elif draw < churn.crash_per_min + churn.leave_per_min:
                    self._events[device_id].put_nowait("leave")
