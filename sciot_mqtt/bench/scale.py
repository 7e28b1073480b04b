"""`bench scale`: how many inferences per second one service sustains, and where the knee is.

A swarm of host-profile devices on loopback (Mosquitto, one service process) offers a growing
load: the same devices at a growing rate each. Each step is a full `sciot-mqtt swarm` run;
it is scored on its steady part (after every device has joined and a warm-up). The knee is
the highest offered rate whose p99 stays within twice the p99 at the lightest load, with
nothing lost and nothing fallen back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.machine import describe_machine
from sciot_mqtt.swarm.mix import Mix
from sciot_mqtt.swarm.report import read_rows
from sciot_mqtt.swarm.run import SwarmOptions, run_swarm

__all__ = ["run_scale_bench", "steady_figures"]


def steady_figures(rows: list[dict[str, Any]], since_s: float, until_s: float) -> dict[str, Any]:
    """Figures of the inferences that arrived in [since_s, until_s)."""
    window = [r for r in rows if since_s <= r["t_s"] < until_s]
    done = [r for r in window if r["path"] != "failed"]
    latencies = np.asarray([r["total_ms"] for r in done], dtype=float)
    span = until_s - since_s
    figures: dict[str, Any] = {
        "window_s": [round(since_s, 1), round(until_s, 1)],
        "inferences": len(window),
        "achieved_per_s": round(len(window) / span, 1) if span > 0 else None,
        "answered": sum(1 for r in window if r["path"] == "offload"),
        "fell_back": sum(1 for r in window if r["path"] == "fallback"),
        "failed": sum(1 for r in window if r["path"] == "failed"),
    }
    if len(latencies):
        figures["latency_ms"] = {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
            "max": round(float(latencies.max()), 2),
        }
        queue = np.asarray([r["queue_ms"] for r in done], dtype=float)
        figures["queue_ms_p99"] = round(float(np.percentile(queue, 99)), 2)
    return figures


async def run_scale_bench(
    out: Path,
    *,
    devices: int,
    rates: list[float],
    duration: float,
    warmup: float,
    split: int,
    join_over: float,
    processes: int | None,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    baseline_p99: float | None = None
    knee: dict[str, Any] | None = None
    for rate in rates:
        mix = Mix.model_validate(
            {
                "compute": {"host": 1},
                "links": {"loopback": 1},
                "workload": {"arrivals": "fixed", "rate_hz": rate},
                "churn": {"join_over_s": join_over},
                "split": split,
            }
        )
        step_dir = out / f"scale-{devices}x{rate:g}"
        result = await run_swarm(
            SwarmOptions(
                devices=devices,
                duration=join_over + warmup + duration,
                mix=mix,
                report=step_dir,
                broker="mosquitto",
                processes=processes,
                verify_every=0,
                command=f"sciot-mqtt bench scale (step: {devices} devices x {rate:g}/s)",
            )
        )
        rows = read_rows([step_dir / "inferences.csv"])
        since = join_over + warmup
        steady = steady_figures(rows, since, since + duration)
        service = result.figures["service"]
        step = {
            "devices": devices,
            "rate_per_device_hz": rate,
            "offered_per_s": round(devices * rate, 1),
            "steady": steady,
            "lost": result.lost,
            "service_cpu_percent_mean": (service["cpu_percent"] or {}).get("mean"),
            "broker_cpu_percent_mean": (
                result.figures["cpu_percent_elsewhere"]["broker"] or {}
            ).get("mean"),
            "swarm_cpu_percent_mean": (
                result.figures["cpu_percent_elsewhere"]["swarm_workers"] or {}
            ).get("mean"),
            "service_rss_mb_max": (service["rss_mb"] or {}).get("max"),
            "report": str(step_dir),
        }
        steps.append(step)
        p99 = steady.get("latency_ms", {}).get("p99")
        print(json.dumps({"step": step}), flush=True)
        clean = result.lost == 0 and steady["fell_back"] == 0 and steady["failed"] == 0
        if baseline_p99 is None and p99 is not None:
            baseline_p99 = p99
        if p99 is not None and baseline_p99 is not None and p99 <= 2 * baseline_p99 and clean:
            knee = step
        elif p99 is None or (baseline_p99 is not None and p99 > 4 * baseline_p99):
            break  # far past the knee: heavier steps would only take longer to say so
    report = {
        "benchmark": "scale",
        "command": "sciot-mqtt bench scale "
        f"--devices {devices} --rates {','.join(f'{r:g}' for r in rates)} "
        f"--duration {duration:g} --split {split}",
        "machine": describe_machine(),
        "config": {
            "devices": devices,
            "duration_s": duration,
            "warmup_s": warmup,
            "join_over_s": join_over,
            "split": split,
            "broker": "mosquitto",
            "devices_compute": "host",
            "links": "loopback",
        },
        "baseline_p99_ms": baseline_p99,
        "knee": knee,
        "steps": steps,
    }
    (out / "scale.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_scale(report, out / "scale.png")
    return report


def plot_scale(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in report["steps"] if "latency_ms" in s["steady"]]
    offered = [s["offered_per_s"] for s in steps]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax.plot(offered, [s["steady"]["latency_ms"]["p50"] for s in steps], "o-", label="p50")
    ax.plot(offered, [s["steady"]["latency_ms"]["p99"] for s in steps], "o-", label="p99")
    if report["baseline_p99_ms"]:
        ax.axhline(2 * report["baseline_p99_ms"], color="grey", ls="--", label="2x lightest p99")
    if report["knee"]:
        ax.axvline(report["knee"]["offered_per_s"], color="red", ls=":", label="knee")
    ax.set_yscale("log")
    ax.set_xlabel("offered inferences/s")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.legend(fontsize=8)
    bx.plot(offered, [s["steady"]["achieved_per_s"] for s in steps], "o-", label="achieved")
    bx.plot(offered, offered, color="grey", ls="--", label="offered")
    bx.set_xlabel("offered inferences/s")
    bx.set_ylabel("inferences/s")
    bx.legend(fontsize=8)
    cfg = report["config"]
    fig.suptitle(
        f"{cfg['devices']} host-profile devices, split {cfg['split']}, Mosquitto, one service",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
