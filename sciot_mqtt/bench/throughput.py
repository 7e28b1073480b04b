"""`bench throughput`: how many inferences per second one service process answers.

The service runs as `sciot-mqtt up` in a child process (against a Mosquitto child, or with
its embedded amqtt), pinned to one split point (`--split`). Light devices (`light.py`), in
processes of their own, do the contract's handshake and then replay requests built once from
tensors computed here: no model work on the device side, so the devices' CPU stays small and
apart. Per split point the offered load ramps up, each step a number of devices times a
window of requests each keeps outstanding. Per step: answered/s, latency p50/p99 (publish
`infer` to receiving its `result`), and the CPU per inference of the service, the broker and
the devices (each process's CPU time over the scored window, divided by the inferences
answered in it). Each split point is run once per `--max-batch` (the service's largest
batch of waiting tails in one invoke; 1 = each alone). For scale, the tail of the same split
is timed alone in this process (LiteRT, one thread, the service's kernels) in the same run,
and per item in a batch of each size. Every request sent is counted:
answered, answered with an `error`, or missing (no answer within the timeout); anything
missing is a loss.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from sciot_mqtt.bench.light import ANSWERED, ERROR, MISSING, OUTCOMES
from sciot_mqtt.bench.lightrun import CpuClock, light_processes
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.machine import describe_machine
from sciot_mqtt.models import ModelPackage, SegmentRunner
from sciot_mqtt.protocol import InferRequest
from sciot_mqtt.protocol.tensors import encode_tensors
from sciot_mqtt.swarm.edge import BrokerKind, Edge, edge_stack
from sciot_mqtt.transport import BrokerAddress

__all__ = ["Step", "parse_steps", "run_throughput_bench"]

TARGET_PER_S = 2000.0
TARGET_P99_MS = 50.0
TARGET_CPU_PER_TAIL = 3.0


@dataclass(frozen=True)
class Step:
    devices: int
    window: int

    @property
    def offered(self) -> int:
        """Requests outstanding at any time."""
        return self.devices * self.window

    def __str__(self) -> str:
        return f"{self.devices}x{self.window}"


def parse_steps(text: str) -> list[Step]:
    """`"1x1,8x1,32x4"`: devices x window per step."""
    steps = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        devices, _, window = part.partition("x")
        try:
            step = Step(int(devices), int(window or 1))
        except ValueError:
            raise ConfigurationError(
                f"bad step {part!r}: write DEVICESxWINDOW, e.g. 16x2"
            ) from None
        if step.devices < 1 or step.window < 1:
            raise ConfigurationError(f"bad step {part!r}: devices and window must be >= 1")
        steps.append(step)
    if not steps:
        raise ConfigurationError("no steps given")
    return steps


@dataclass
class Workload:
    """What the devices send at one split point, and the same tail timed alone."""

    split: int
    templates: list[dict[str, Any]]
    payload_bytes: int
    tail_ms: dict[str, float]
    batch_tail_ms: dict[int, float] | None = None  # batch size -> per-item p50
    xnnpack_tail: dict[str, Any] | None = None  # see `time_xnnpack_tail`


def time_xnnpack_tail(
    package: ModelPackage, split: int, live: list[dict[str, np.ndarray]], runs: int = 400
) -> dict[str, Any]:
    """The same tail with LiteRT's default delegate (XNNPACK): p50 (ms), and whether its
    outputs are bit-identical to the builtin kernels' on these inputs (the service would
    need that to use it; it does not: docs/perf.md)."""
    builtin = SegmentRunner(package)
    xnnpack = SegmentRunner(package, default_delegates=True)
    identical = all(
        np.array_equal(xnnpack.run_tail(split, t), builtin.run_tail(split, t)) for t in live
    )
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        xnnpack.run_tail(split, live[i % len(live)])
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50": round(float(np.percentile(samples, 50)), 4), "identical": identical}


def time_batched_tail(
    runner: SegmentRunner, split: int, live: list[dict[str, np.ndarray]], sizes: list[int]
) -> dict[int, float]:
    """The tail in one invoke for a batch of each size: per-item p50 (ms). Timed whether or
    not the service's check lets this split batch (it is the kernels' cost either way)."""
    out = {}
    for size in sizes:
        if size < 2:
            continue
        items = [live[i % len(live)] for i in range(size)]
        runner.run_tail_batch(split, items)  # warm up, resize
        samples = []
        for _ in range(max(20, 800 // size)):
            started = time.perf_counter()
            runner.run_tail_batch(split, items)
            samples.append((time.perf_counter() - started) * 1000 / size)
        out[size] = round(float(np.percentile(samples, 50)), 4)
    return out


def prepare_workload(
    package: ModelPackage,
    split: int,
    frames: int = 8,
    batch_sizes: list[int] | None = None,
    *,
    xnnpack: bool = False,
) -> Workload:
    """Run the heads here (once), encode the requests as the contract says, time the tail
    (alone, per item in a batch of each of `batch_sizes`, and with XNNPACK if asked)."""
    runner = SegmentRunner(package)
    images = synthetic_images(seed=5)
    templates, live = [], []
    for _ in range(frames):
        tensors, seconds = runner.run_head(split, package.quantize_input(next(images)))
        request = InferRequest(
            seq=0,
            session=0,
            model=package.model_id,
            split=split,
            tensors=encode_tensors(package.boundaries[split].tensors, tensors),
            device_ms=[s * 1000 for s in seconds],
        )
        templates.append(request.model_dump(mode="python", exclude_none=True))
        live.append(tensors)
    payload_bytes = len(msgpack.packb(templates[0]))
    return Workload(
        split,
        templates,
        payload_bytes,
        time_tail(runner, split, live),
        time_batched_tail(runner, split, live, batch_sizes or []),
        time_xnnpack_tail(package, split, live) if xnnpack else None,
    )


def time_tail(
    runner: SegmentRunner, split: int, live: list[dict[str, np.ndarray]]
) -> dict[str, Any]:
    """The tail `[split, N)` as the service's worker calls it, alone: p50 and p10 (ms)."""
    for tensors in live:
        runner.run_tail(split, tensors)  # warm up
    samples = []
    for i in range(400):
        started = time.perf_counter()
        runner.run_tail(split, live[i % len(live)])
        samples.append((time.perf_counter() - started) * 1000)
    array = np.asarray(samples)
    return {
        "p50": round(float(np.percentile(array, 50)), 4),
        "p10": round(float(np.percentile(array, 10)), 4),
        "runs": len(samples),
    }


def step_figures(
    rows: list[list[Any]], since: float, until: float, cpu_s: dict[str, float]
) -> dict[str, Any]:
    """The step's figures: requests sent in [since, until) for latency, answers completed in
    it for the rate and the CPU per inference; every request of the step for the tally."""
    span = until - since
    tally = {k: sum(1 for r in rows if r[2] == k) for k in OUTCOMES}
    errors: dict[str, int] = {}
    for r in rows:
        if r[2] == ERROR:
            errors[r[3]] = errors.get(r[3], 0) + 1
    completed = sum(1 for r in rows if r[2] == ANSWERED and since <= r[0] + r[1] / 1000 < until)
    latencies = np.asarray([r[1] for r in rows if r[2] == ANSWERED and since <= r[0] < until])
    figures: dict[str, Any] = {
        "sent": len(rows),
        **tally,
        "error_codes": errors,
        "answered_per_s": round(completed / span, 1),
    }
    if len(latencies):
        figures["latency_ms"] = {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
            "max": round(float(latencies.max()), 2),
        }
    figures["cpu_percent"] = {k: round(v / span * 100, 1) for k, v in cpu_s.items()}
    figures["cpu_ms_per_inference"] = {
        k: (round(v * 1000 / completed, 4) if completed else None) for k, v in cpu_s.items()
    }
    return figures


async def run_step(
    edge: Edge,
    step: Step,
    workload: Workload,
    *,
    model: str,
    processes: int,
    warmup: float,
    duration: float,
    answer_timeout: float,
    tag: str,
) -> dict[str, Any]:
    service_pids = [edge.service_pid] if edge.service_pid else []
    return await run_load(
        edge.address,
        {"service": service_pids, "broker": [edge.broker_pid] if edge.broker_pid else []},
        step,
        workload,
        model=model,
        processes=processes,
        warmup=warmup,
        duration=duration,
        answer_timeout=answer_timeout,
        tag=tag,
    )


async def run_load(
    address: BrokerAddress,
    pids: dict[str, list[int]],
    step: Step,
    workload: Workload,
    *,
    model: str,
    processes: int,
    warmup: float,
    duration: float,
    answer_timeout: float,
    tag: str,
    keep_rows: bool = False,
) -> dict[str, Any]:
    """One step of load from light devices; the CPU of `pids` (by group) and of the devices
    over the scored window (with `keep_rows`, every request's row under `rows`)."""
    with tempfile.TemporaryDirectory(prefix="sciot-throughput-") as tmp:
        ids = [f"light-{tag}-{i}" for i in range(step.devices)]
        async with light_processes(
            address,
            ids,
            window=step.window,
            model=model,
            templates=workload.templates,
            processes=processes,
            workdir=Path(tmp),
            answer_timeout=answer_timeout,
        ) as devices:
            start = time.time() + 0.3
            since, until = start + warmup, start + warmup + duration
            await devices.go(start, until)
            clock = CpuClock({k: v for k, v in pids.items() if v} | {"devices": devices.pids})
            await asyncio.sleep(max(0.0, since - time.time()))
            before = clock.read()
            await asyncio.sleep(max(0.0, until - time.time()))
            after = clock.read()
            load = os.getloadavg()
            await devices.collect()
    rows = devices.rows
    figures = step_figures(rows, since, until, {k: after[k] - before[k] for k in before})
    return {
        "devices": step.devices,
        "window": step.window,
        "offered": step.offered,
        **figures,
        "device_failures": devices.failures,
        "load_average": [round(x, 2) for x in load],
    } | ({"rows": rows} if keep_rows else {})


def summarize(series: dict[str, Any]) -> dict[str, Any]:
    """The best step within the latency target, and what the service spent per inference."""
    tail = series["tail_ms"]["p50"]
    fits = [
        s
        for s in series["steps"]
        if s.get("latency_ms") and s["latency_ms"]["p99"] <= TARGET_P99_MS and s[MISSING] == 0
    ]
    best = max(fits, key=lambda s: s["answered_per_s"], default=None)
    peak = max(series["steps"], key=lambda s: s["answered_per_s"], default=None)
    out: dict[str, Any] = {"tail_ms_p50": tail}
    for name, step in (("best_within_p99_target", best), ("peak", peak)):
        if step is None:
            out[name] = None
            continue
        service_ms = step["cpu_ms_per_inference"].get("service")
        out[name] = {
            "step": f"{step['devices']}x{step['window']}",
            "answered_per_s": step["answered_per_s"],
            "latency_ms": step.get("latency_ms"),
            "service_cpu_ms_per_inference": service_ms,
            "service_cpu_per_tail": round(service_ms / tail, 2) if service_ms and tail else None,
        }
    return out


async def run_throughput_bench(
    package: ModelPackage,
    out: Path,
    *,
    splits: list[int],
    steps: list[Step],
    brokers: list[BrokerKind],
    workers: int,
    processes: int,
    warmup: float,
    duration: float,
    answer_timeout: float = 10.0,
    command: str = "",
    max_batches: list[int] | None = None,
) -> dict[str, Any]:
    """`max_batches`: the service's `--max-batch` values, each a series (default: the
    service's own default, not passed)."""
    batches: list[int | None] = list(max_batches) if max_batches else [None]
    for split in splits:
        if not 0 <= split < package.num_ops:
            raise ConfigurationError(f"split {split} outside 0..{package.num_ops - 1}")
    report: dict[str, Any] = {
        "benchmark": "throughput",
        "command": command,
        "machine": describe_machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "config": {
            "model": package.model_id,
            "splits": splits,
            "steps": [str(s) for s in steps],
            "brokers": brokers,
            "service_workers": workers,
            "max_batches": batches,
            "device_processes": processes,
            "warmup_s": warmup,
            "duration_s": duration,
            "transport": "loopback TCP, QoS 1 both ways",
            "service": "sciot-mqtt up (child process), split pinned with --split",
        },
        "targets": {
            "answered_per_s": TARGET_PER_S,
            "p99_ms": TARGET_P99_MS,
            "service_cpu_per_tail": TARGET_CPU_PER_TAIL,
        },
        "series": [],
    }
    lost = 0
    for split in splits:
        sizes = [b for b in batches if b is not None]
        workload = prepare_workload(package, split, batch_sizes=sizes, xnnpack=True)
        for broker in brokers:
            for max_batch in batches:
                service_args = ["--split", str(split), "--workers", str(workers)]
                name = f"{broker}-s{split}"
                if max_batch is not None:
                    service_args += ["--max-batch", str(max_batch)]
                    name += f"-b{max_batch}"
                series: dict[str, Any] = {
                    "broker": broker,
                    "split": split,
                    "max_batch": max_batch,
                    "payload_bytes": workload.payload_bytes,
                    "tail_ms": workload.tail_ms,
                    "batch_tail_ms_per_item": workload.batch_tail_ms,
                    "xnnpack_tail_ms": workload.xnnpack_tail,
                    "steps": [],
                }
                async with edge_stack(
                    broker, out, service_args=service_args, log_name=f"throughput-{name}.log"
                ) as edge:
                    for number, step in enumerate(steps):
                        figures = await run_step(
                            edge,
                            step,
                            workload,
                            model=package.model_id,
                            processes=processes,
                            warmup=warmup,
                            duration=duration,
                            answer_timeout=answer_timeout,
                            tag=f"{number}",
                        )
                        lost += figures[MISSING]
                        series["steps"].append(figures)
                        print(json.dumps({"series": name, "step": figures}), flush=True)
                series["summary"] = summarize(series)
                report["series"].append(series)
    report["lost"] = lost
    (out / "throughput.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_throughput(report, out / "throughput.png")
    return report


def plot_throughput(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.4))
    # One colour per (broker, split); one marker and line style per max_batch.
    groups = list(dict.fromkeys((x["broker"], x["split"]) for x in report["series"]))
    batches = list(dict.fromkeys(x.get("max_batch") for x in report["series"]))
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
    for series in report["series"]:
        steps = [s for s in series["steps"] if s.get("latency_ms")]
        rate = [s["answered_per_s"] for s in steps]
        label = f"{series['broker']} s={series['split']}"
        if series.get("max_batch") is not None:
            label += f" b={series['max_batch']}"
        color = f"C{groups.index((series['broker'], series['split'])) % 10}"
        marker, line = styles[batches.index(series.get("max_batch")) % len(styles)]
        style = {"color": color, "marker": marker, "ls": line, "ms": 4}
        ax.plot(rate, [s["latency_ms"]["p99"] for s in steps], label=label, **style)
        service = [s["cpu_ms_per_inference"].get("service") for s in steps]
        bx.plot(rate, service, label=label, **style)
        bx.axhline(series["tail_ms"]["p50"], color=color, ls="--", lw=0.8)
        cx.plot(
            [s["offered"] for s in series["steps"]],
            [s["answered_per_s"] for s in series["steps"]],
            label=label,
            **style,
        )
    ax.axhline(TARGET_P99_MS, color="grey", ls="--", lw=0.8, label="p99 target")
    ax.axvline(TARGET_PER_S, color="grey", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("answered inferences/s")
    ax.set_ylabel("latency p99 (ms)")
    ax.legend(fontsize=7)
    bx.set_xlabel("answered inferences/s")
    bx.set_ylabel("service CPU ms per inference (dashed: tail alone)")
    bx.set_ylim(bottom=0)
    cx.set_xlabel("requests outstanding (devices x window)")
    cx.set_ylabel("answered inferences/s")
    cx.axhline(TARGET_PER_S, color="grey", ls=":", lw=0.8, label="target")
    cx.legend(fontsize=7)
    for axis in (ax, bx, cx):
        axis.grid(alpha=0.3)
    machine = report["machine"]
    fig.suptitle(
        f"bench throughput: {report['config']['model']}, one service process "
        f"({machine['cpu']}, {machine['cores']} cores, commit {machine['commit']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
