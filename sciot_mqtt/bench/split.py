"""`sciot-mqtt bench split`: end-to-end latency of every split point on loopback.

The service runs as `sciot-mqtt up` in a child process (embedded amqtt, or against a
Mosquitto child), the device in this process, as deployed. Per split point: latency from
publishing `infer` to receiving `result` (the device's head compute is excluded and reported
apart), bytes on the wire, and the service's overhead (receive to publish, minus the tail).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import SyntheticInputs
from sciot_mqtt.machine import describe_machine
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.swarm.edge import BrokerKind, edge_stack, model_flags
from sciot_mqtt.transport import BrokerAddress

BROKERS: tuple[BrokerKind, ...] = ("amqtt", "mosquitto")


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p99": float(np.percentile(array, 99)),
        "mean": float(array.mean()),
    }


async def _measure(
    address: BrokerAddress, package: ModelPackage, iterations: int, warmup: int
) -> list[dict[str, Any]]:
    settings = DeviceSettings(  # type: ignore[call-arg]
        _env_file=None, id="bench", models=[package.model_id], result_timeout=10.0
    )
    rows = []
    async with Device(settings, address, packages={package.model_id: package}) as device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        source = SyntheticInputs(seed=7)
        frames = [package.quantize_input(source.next_for(package)) for _ in range(16)]
        for split in package.split_points:
            settings.split = split
            records = []
            for i in range(warmup + iterations):
                record = await device.infer(frames[i % len(frames)])
                if i >= warmup:
                    records.append(record)
            lost = [r for r in records if split < package.num_ops and r.path != "offload"]
            row: dict[str, Any] = {
                "split": split,
                "tensors": len(package.boundaries[split].tensors),
                "tensor_bytes": package.boundaries[split].nbytes,
                "payload_bytes": int(np.mean([r.sent_bytes for r in records])),
                "head_ms": _stats([r.head_ms for r in records]),
                "not_offloaded": len(lost),
            }
            offloaded = [r for r in records if r.path == "offload"]
            if offloaded:
                row["latency_ms"] = _stats([r.rtt_ms or 0.0 for r in offloaded])
                row["tail_ms"] = _stats([r.edge_ms or 0.0 for r in offloaded])
                row["service_overhead_ms"] = _stats(
                    [(r.service_ms or 0.0) - (r.edge_ms or 0.0) for r in offloaded]
                )
            rows.append(row)
    return rows


async def run_split_bench(
    package: ModelPackage,
    out: Path,
    *,
    brokers: tuple[BrokerKind, ...] = BROKERS,
    iterations: int = 200,
    warmup: int = 20,
    model_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Every split point of ``package`` (prepared in ``model_cache``, which the service
    child is told), on each broker in turn."""
    report: dict[str, Any] = {
        "benchmark": "split",
        "command": "sciot-mqtt bench split " + " ".join(sys.argv[3:]),
        "machine": describe_machine(),
        "config": {
            "model": package.model_id,
            "ops": package.num_ops,
            "iterations": iterations,
            "warmup": warmup,
            "transport": "loopback TCP, QoS 1 both ways",
            "service": "sciot-mqtt up (child process), 2 tail workers",
        },
        "brokers": {},
    }
    for broker in brokers:
        async with edge_stack(
            broker,
            out,
            log_name=f"service-{broker}.log",
            service_args=model_flags([package.model_id], model_cache),
        ) as edge:
            address = edge.address
            report["brokers"][broker] = await _measure(address, package, iterations, warmup)
    (out / "split.json").write_text(json.dumps(report, indent=2))
    plot_split(report, out / "split.png")
    return report


def plot_split(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for broker, rows in report["brokers"].items():
        rows = [r for r in rows if "latency_ms" in r]
        splits = [r["split"] for r in rows]
        top.plot(splits, [r["latency_ms"]["p50"] for r in rows], marker="o", label=f"{broker} p50")
        top.plot(
            splits, [r["latency_ms"]["p99"] for r in rows], linestyle="--", label=f"{broker} p99"
        )
    top.axhline(10, color="grey", linewidth=0.8, linestyle=":", label="10 ms target")
    top.set_ylabel("publish -> result (ms)")
    top.set_title(
        f"{report['config']['model']}: end-to-end latency per split point "
        f"({report['machine']['cpu']}, {report['machine']['cores']} cores)"
    )
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    rows = next(iter(report["brokers"].values()))
    bottom.bar([r["split"] for r in rows], [r["tensor_bytes"] / 1024 for r in rows])
    bottom.set_ylabel("tensor bytes at the cut (KiB)")
    bottom.set_xlabel("split point s (device runs ops [0, s))")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
