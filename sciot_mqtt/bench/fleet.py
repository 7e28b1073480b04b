"""`bench fleet`: a fleet of service instances on this machine, and a kill -9 in the middle.

Scaling: for each count N of `--instances`, Mosquitto and N `sciot-mqtt up --external-broker
--instance fleet-{i}` processes (each pinned to one split point), loaded by light devices
(`light.py`, through `bench throughput`'s `run_load`) in processes of their own, each device
sending to the instance its `assign` names. Per N: answered/s, latency p50/p99, and CPU ms per
inference of all instance processes summed, of Mosquitto and of the devices.

Failover: a few instances serve a dozen light devices mid-stream; the instance serving the
most devices (as the `assign`s on the broker say) is killed with SIGKILL. Each device's mode
and serving instance over time come from the device's own view (`light.py` keeps every
change); the kill is timed here, the will and the `assign`s by a watcher on the broker. Per
device that was on the victim: how long after the will it offloaded to a survivor.

A light device has no model, so "local" is defined for it: while it has no live assigned
instance it sends nothing (each lane waits), and requests in flight to the dead instance end
on the device with the reason `service unavailable` (a real device would finish them
locally). Every request is counted: answered, rejected with an `error`, finished on the
device with a reason, or missing (no answer within the timeout): missing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciot_mqtt.bench.fleetplot import plot_failover, plot_scaling
from sciot_mqtt.bench.light import ANSWERED, LOCAL, MISSING, OUTCOMES
from sciot_mqtt.bench.lightrun import light_processes
from sciot_mqtt.bench.throughput import Step, Workload, prepare_workload, run_load
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.machine import describe_machine
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    Assign,
    DeviceAddress,
    DeviceTopic,
    ServiceAddress,
    ServiceState,
    ServiceTopic,
    device_filter,
    parse_topic,
    service_filter,
)
from sciot_mqtt.swarm.edge import Edge, fleet_stack, model_flags
from sciot_mqtt.transport import BrokerAddress, MqttSession

__all__ = ["FailoverPlan", "run_fleet_bench"]

REASSIGN_TARGET_S = 5.0
LOCAL_DEFINITION = (
    "A light device has no model. While it has no live assigned instance (its instance's "
    "will arrived, and no assign answering its birth names a live one yet) it is local: it "
    "sends nothing (each lane waits for a live assignment), and requests in flight to the "
    "dead instance end on the device with the reason 'service unavailable' (outcome "
    "'local'), as a real device would finish them locally."
)


@dataclass(frozen=True)
class FailoverPlan:
    instances: int = 3
    devices: int = 12
    before_s: float = 3.0  # streaming before the kill
    after_s: float = 7.0  # streaming after it


@dataclass
class BrokerWatch:
    """The instances' `state` and the devices' `assign`s as the broker delivers them, timed."""

    states: list[tuple[float, str, bool]] = field(default_factory=list)
    assigns: list[tuple[float, str, str]] = field(default_factory=list)
    owner: dict[str, str] = field(default_factory=dict)  # device -> instance, latest assign
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def will_at(self, instance: str, since: float) -> float | None:
        return next(
            (
                t
                for t, name, online in self.states
                if name == instance and not online and t >= since
            ),
            None,
        )

    async def read(self, mqtt: MqttSession) -> None:
        async for message in mqtt.messages():
            now = time.time()
            address = parse_topic(message.topic)
            if not message.payload:
                continue
            if isinstance(address, ServiceAddress) and address.kind is ServiceTopic.STATE:
                state = ServiceState.decode(message.payload)
                self.states.append((now, address.instance, state.online))
            elif isinstance(address, DeviceAddress) and address.kind is DeviceTopic.ASSIGN:
                assign = Assign.decode(message.payload)
                self.assigns.append((now, address.device_id, assign.instance))
                self.owner[address.device_id] = assign.instance
            self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def watching(address: BrokerAddress) -> AsyncIterator[BrokerWatch]:
    watch = BrokerWatch()
    async with MqttSession(address, client_id=f"bench-fleet-watch-{os.getpid()}") as mqtt:
        await mqtt.subscribe(service_filter(ServiceTopic.STATE), device_filter(DeviceTopic.ASSIGN))
        reader = asyncio.create_task(watch.read(mqtt), name="bench-fleet-watch")
        try:
            yield watch
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def instance_names(count: int) -> list[str]:
    return [f"fleet-{i}" for i in range(1, count + 1)]


async def scaling_point(
    count: int,
    step: Step,
    workload: Workload,
    out: Path,
    *,
    model: str,
    service_args: list[str],
    processes: int,
    warmup: float,
    duration: float,
    answer_timeout: float,
) -> dict[str, Any]:
    async with fleet_stack(
        instance_names(count), out, service_args=service_args, log_prefix=f"fleet{count}"
    ) as edges:
        pids = {
            "service": [e.service_pid for e in edges if e.service_pid],
            "broker": [edges[0].broker_pid] if edges[0].broker_pid else [],
        }
        figures = await run_load(
            edges[0].address,
            pids,
            step,
            workload,
            model=model,
            processes=processes,
            warmup=warmup,
            duration=duration,
            answer_timeout=answer_timeout,
            tag=f"n{count}",
            keep_rows=True,
        )
    rows = figures.pop("rows")
    by_instance = Counter(r[4] for r in rows if r[2] == ANSWERED)
    return {
        "instances": count,
        **figures,
        "answered_by_instance": dict(sorted(by_instance.items())),
    }


def _mode_at(timeline: list[list[Any]], at: float) -> tuple[str, str | None]:
    current: tuple[str, str | None] = ("local", None)
    for t, mode, instance in timeline:
        if t > at:
            break
        current = (mode, instance)
    return current


def analyse_failover(
    timelines: dict[str, list[list[Any]]],
    rows_by_device: dict[str, list[list[Any]]],
    watch: BrokerWatch,
    victim: str,
    killed_at: float,
    will_at: float | None,
) -> list[dict[str, Any]]:
    """Per device: its instance at the kill, when it went local and when it offloaded to a
    survivor (from its own timeline), its first `assign` to a survivor seen on the broker."""
    out = []
    for device, timeline in sorted(timelines.items()):
        mode, serving = _mode_at(timeline, killed_at)
        row: dict[str, Any] = {"device": device, "at_kill": serving if mode == "offload" else None}
        rows = rows_by_device.get(device, [])
        row["requests"] = {k: sum(1 for r in rows if r[2] == k) for k in OUTCOMES}
        if serving == victim:
            local_at = next((t for t, m, _ in timeline if t >= killed_at and m == "local"), None)
            back = next(
                (
                    (t, i)
                    for t, m, i in timeline
                    if local_at is not None and t >= local_at and m == "offload" and i != victim
                ),
                None,
            )
            assigned = next(
                (
                    t
                    for t, d, i in watch.assigns
                    if d == device and i != victim and t >= (will_at or killed_at)
                ),
                None,
            )
            row["local_from_kill_s"] = round(local_at - killed_at, 3) if local_at else None
            row["offloading_again_to"] = back[1] if back else None
            row["local_s"] = round(back[0] - local_at, 3) if back and local_at else None
            row["reassigned_after_will_s"] = (
                round(back[0] - will_at, 3) if back and will_at is not None else None
            )
            row["assign_on_broker_after_will_s"] = (
                round(assigned - will_at, 3) if assigned and will_at is not None else None
            )
        out.append(row)
    return out


async def failover_run(
    plan: FailoverPlan,
    workload: Workload,
    out: Path,
    *,
    model: str,
    service_args: list[str],
    processes: int,
    answer_timeout: float,
) -> dict[str, Any]:
    names = instance_names(plan.instances)
    async with (
        fleet_stack(names, out, service_args=service_args, log_prefix="failover") as edges,
        watching(edges[0].address) as watch,
    ):
        edge_of: dict[str, Edge] = {e.instance: e for e in edges}
        ids = [f"fo-{i:02d}" for i in range(plan.devices)]
        with tempfile.TemporaryDirectory(prefix="sciot-fleet-") as tmp:
            async with light_processes(
                edges[0].address,
                ids,
                window=1,
                model=model,
                templates=workload.templates,
                processes=processes,
                workdir=Path(tmp),
                answer_timeout=answer_timeout,
            ) as devices:
                await watch.until(lambda: all(d in watch.owner for d in ids), 30)
                start = time.time() + 0.3
                kill_at = start + plan.before_s
                stop = kill_at + plan.after_s
                await devices.go(start, stop)
                await asyncio.sleep(max(0.0, kill_at - time.time()))
                served = Counter(watch.owner[d] for d in ids)
                victim = max(names, key=lambda n: (served[n], n))
                pid = edge_of[victim].service_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                with contextlib.suppress(TimeoutError):
                    await watch.until(lambda: watch.will_at(victim, killed_at) is not None, 10)
                will_at = watch.will_at(victim, killed_at)
                load = os.getloadavg()
                await devices.collect()
    rows_by_device: dict[str, list[list[Any]]] = {d: [] for d in ids}
    for row in devices.rows:
        rows_by_device.setdefault(row[5], []).append(row)
    per_device = analyse_failover(
        devices.timelines, rows_by_device, watch, victim, killed_at, will_at
    )
    moved = [d for d in per_device if d["at_kill"] == victim]
    delays = [d["reassigned_after_will_s"] for d in moved]
    measured = [d for d in delays if d is not None]
    tally = {k: sum(1 for r in devices.rows if r[2] == k) for k in OUTCOMES}
    worst = max(measured, default=None)
    within = bool(moved) and len(measured) == len(moved) and max(measured) <= REASSIGN_TARGET_S
    return {
        "instances": names,
        "devices": plan.devices,
        "victim": victim,
        "devices_on_victim": len(moved),
        "start": start,
        "killed_at": killed_at,
        "will_at": will_at,
        "will_after_kill_s": round(will_at - killed_at, 3) if will_at else None,
        "stop": stop,
        "reassigned_after_will_s": {
            "max": worst,
            "mean": round(sum(measured) / len(measured), 3) if measured else None,
            "target": REASSIGN_TARGET_S,
            "all_within_target": within,
        },
        "requests": {"sent": len(devices.rows), **tally},
        "device_failures": devices.failures,
        "per_device": per_device,
        "timelines": dict(sorted(devices.timelines.items())),
        # [finished (s from the kill), device, instance it was sent to, reason]
        "finished_on_device": sorted(
            [round(r[0] + r[1] / 1000 - killed_at, 4), r[5], r[4], r[3]]
            for r in devices.rows
            if r[2] == LOCAL
        ),
        "load_average": [round(x, 2) for x in load],
    }


async def run_fleet_bench(
    package: ModelPackage,
    out: Path,
    *,
    counts: list[int],
    step: Step,
    split: int,
    workers: int,
    processes: int,
    warmup: float,
    duration: float,
    failover: FailoverPlan | None,
    model_cache: str | None = None,
    answer_timeout: float = 10.0,
    command: str = "",
) -> dict[str, Any]:
    if not 0 <= split < package.num_ops:
        raise ConfigurationError(f"split {split} outside 0..{package.num_ops - 1}")
    if any(n < 1 for n in counts) or (failover is not None and failover.instances < 2):
        raise ConfigurationError("instances: at least 1 per point, 2 for the failover")
    service_args = [
        "--split",
        str(split),
        "--workers",
        str(workers),
        *model_flags([package.model_id], model_cache),
    ]
    report: dict[str, Any] = {
        "benchmark": "fleet",
        "command": command,
        "machine": describe_machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "config": {
            "model": package.model_id,
            "split": split,
            "instances": counts,
            "step": str(step),
            "service_workers": workers,
            "device_processes": processes,
            "warmup_s": warmup,
            "duration_s": duration,
            "broker": "Mosquitto (child process)",
            "service": "one `sciot-mqtt up --external-broker --instance fleet-{i}` process per "
            "instance, split pinned with --split, placement hash (the default)",
            "transport": "loopback TCP, QoS 1 both ways",
            "failover": None if failover is None else failover.__dict__,
        },
        "definitions": {
            "local": LOCAL_DEFINITION,
            "lost": "a request with no answer within the timeout (missing)",
            "cpu_ms_per_inference": "CPU time of each group over the scored window (service: "
            "every instance process summed) divided by the inferences answered in it",
        },
        "scaling": [],
    }
    workload = prepare_workload(package, split)
    report["payload_bytes"] = workload.payload_bytes
    report["tail_ms"] = workload.tail_ms
    lost = 0
    for count in counts:
        point = await scaling_point(
            count,
            step,
            workload,
            out,
            model=package.model_id,
            service_args=service_args,
            processes=processes,
            warmup=warmup,
            duration=duration,
            answer_timeout=answer_timeout,
        )
        lost += point[MISSING]
        report["scaling"].append(point)
        print(json.dumps({"instances": count, "point": _brief(point)}), flush=True)
    if failover is not None:
        result = await failover_run(
            failover,
            workload,
            out,
            model=package.model_id,
            service_args=service_args,
            processes=processes,
            answer_timeout=answer_timeout,
        )
        lost += result["requests"][MISSING]
        report["failover"] = result
    report["lost"] = lost
    (out / "fleet.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_scaling(report, out / "fleet.png")
    if failover is not None:
        plot_failover(report, out / "fleet-failover.png")
    return report


def _brief(point: dict[str, Any]) -> dict[str, Any]:
    return {
        k: point.get(k) for k in ("answered_per_s", "latency_ms", "cpu_ms_per_inference", MISSING)
    }
