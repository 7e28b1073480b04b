"""`bench soak`: a long swarm run with devices joining, leaving and crashing, watching the
service for leaks: its memory must level off, its descriptors stay bounded, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.machine import describe_machine
from sciot_mqtt.swarm.mix import Mix
from sciot_mqtt.swarm.run import SwarmOptions, run_swarm

__all__ = ["level_off", "run_soak_bench"]

#: Growth over the second half of the run below which memory counts as levelled off.
LEVEL_MB_PER_MIN = 0.5


def level_off(samples: list[dict[str, Any]], key: str = "service_rss_mb") -> dict[str, Any]:
    """Linear trend of `key` over the second half of the run, and whether it is flat."""
    points = [(s["t_s"], s[key]) for s in samples if s.get(key) is not None]
    if len(points) < 10:
        return {"samples": len(points), "levelled_off": None}
    half = points[len(points) // 2 :]
    t = np.asarray([p[0] for p in half]) / 60
    v = np.asarray([p[1] for p in half])
    slope = float(np.polyfit(t, v, 1)[0])
    return {
        "samples": len(points),
        "first": points[0][1],
        "max": max(p[1] for p in points),
        "last": points[-1][1],
        "second_half_slope_per_min": round(slope, 3),
        "levelled_off": abs(slope) < LEVEL_MB_PER_MIN if key == "service_rss_mb" else None,
    }


async def run_soak_bench(
    out: Path, *, devices: int, duration: float, rate: float, churn_per_min: float
) -> dict[str, Any]:
    mix = Mix.model_validate(
        {
            "compute": {"host": 0.5, "esp32s3:0.05": 0.5},
            "links": {"wifi": 0.5, "lte": 0.3, "congested": 0.2},
            "workload": {"arrivals": "poisson", "rate_hz": rate},
            "churn": {
                "join_over_s": 10,
                "leave_per_min": churn_per_min / 2,
                "crash_per_min": churn_per_min / 2,
                "rejoin_after_s": 5,
            },
        }
    )
    command = (
        f"sciot-mqtt bench soak --devices {devices} --duration {duration:g} --rate {rate:g} "
        f"--churn {churn_per_min:g}"
    )
    swarm_dir = out / "soak-swarm"
    result = await run_swarm(
        SwarmOptions(
            devices=devices,
            duration=duration,
            mix=mix,
            report=swarm_dir,
            broker="mosquitto",
            command=command,
        )
    )
    samples = json.loads((swarm_dir / "report.json").read_text())["samples"]
    figures = result.figures
    report = {
        "benchmark": "soak",
        "command": command,
        "machine": describe_machine(),
        "config": {
            "devices": devices,
            "duration_s": duration,
            "rate_per_device_hz": rate,
            "churn_per_min": churn_per_min,
            "mix": mix.describe(),
        },
        "lost": result.lost,
        "inferences": figures["inferences"],
        "churn": figures["churn"],
        "latency_ms": figures["latency_ms"],
        "service_rss_mb": level_off(samples, "service_rss_mb"),
        "service_fds": level_off(samples, "service_fds"),
        "swarm_report": str(swarm_dir),
    }
    (out / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_soak(samples, report, out / "soak.png")
    return report


def plot_soak(samples: list[dict[str, Any]], report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [s for s in samples if s.get("service_rss_mb") is not None]
    t = [s["t_s"] / 60 for s in measured]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(t, [s["service_rss_mb"] for s in measured], label="service RSS (MB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    twin = ax.twinx()
    twin.plot(t, [s["service_fds"] for s in measured], color="C1", label="open descriptors")
    twin.set_ylabel("file descriptors")
    ax.legend(loc="upper left")
    twin.legend(loc="lower right")
    cfg = report["config"]
    fig.suptitle(
        f"soak: {cfg['devices']} devices with churn, {report['churn']['crashes']} crashes, "
        f"{report['churn']['leaves']} leaves, {report['lost']} lost",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
