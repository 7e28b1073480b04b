"""`bench fleet`'s figures: scaling with the number of instances, and the failover timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_failover", "plot_scaling"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _caption(report: dict[str, Any]) -> str:
    machine = report["machine"]
    return (
        f"{report['config']['model']} split {report['config']['split']}, Mosquitto "
        f"({machine['cpu']}, {machine['cores']} cores, commit {machine['commit']})"
    )


def plot_scaling(report: dict[str, Any], path: Path) -> None:
    """Answered/s, latency and CPU per inference against the number of instances."""
    plt = _pyplot()
    points = report["scaling"]
    counts = [p["instances"] for p in points]
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.4))
    ax.plot(counts, [p["answered_per_s"] for p in points], "o-", label="measured")
    if points:
        one = points[0]["answered_per_s"] / points[0]["instances"]
        ax.plot(counts, [one * n for n in counts], ":", color="grey", label="linear from the first")
    for point in points:  # how much of the machine the point used: all processes measured
        busy = sum(point["cpu_percent"].values()) / 100
        ax.annotate(
            f"{busy:.2f} cores busy",
            (point["instances"], point["answered_per_s"]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=7,
        )
    ax.set_xlabel("instances (processes)")
    ax.set_ylabel("answered inferences/s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    timed = [p for p in points if p.get("latency_ms")]
    bx.plot(
        [p["instances"] for p in timed], [p["latency_ms"]["p99"] for p in timed], "o-", label="p99"
    )
    bx.plot(
        [p["instances"] for p in timed], [p["latency_ms"]["p50"] for p in timed], ".:", label="p50"
    )
    bx.set_xlabel("instances (processes)")
    bx.set_ylabel("latency, infer to result (ms)")
    bx.set_ylim(bottom=0)
    bx.legend(fontsize=8)
    for group in ("service", "broker", "devices"):
        values = [p["cpu_ms_per_inference"].get(group) for p in points]
        cx.plot(
            counts, values, "o-", label=group + (" (all instances)" if group == "service" else "")
        )
    cx.set_xlabel("instances (processes)")
    cx.set_ylabel("CPU ms per answered inference")
    cx.set_ylim(bottom=0)
    cx.legend(fontsize=8)
    for axis in (ax, bx, cx):
        axis.set_xticks(counts)
        axis.grid(alpha=0.3)
    step = report["config"]["step"]
    fig.suptitle(f"bench fleet: {step} light devices x window, {_caption(report)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _timeline_panel(
    ax: Any,
    failover: dict[str, Any],
    colors: dict[str, str],
    scale: float,
    window: tuple[float, float],
) -> None:
    """The devices' rows on `ax`, times from the kill multiplied by `scale`, within `window`."""
    zero, stop = failover["killed_at"], failover["stop"]
    devices = sorted(failover["timelines"])
    for row, device in enumerate(devices):
        timeline = failover["timelines"][device]
        ends = [t for t, _, _ in timeline[1:]] + [stop]
        for (t, mode, instance), end in zip(timeline, ends, strict=True):
            left, right = (max(t, failover["start"]) - zero) * scale, (end - zero) * scale
            if right <= left:
                continue
            if mode == "offload":
                ax.broken_barh([(left, right - left)], (row - 0.4, 0.8), color=colors[instance])
            else:
                ax.broken_barh(
                    [(left, right - left)],
                    (row - 0.4, 0.8),
                    facecolor="white",
                    edgecolor="black",
                    hatch="///",
                    lw=0.5,
                )
    finished = failover["finished_on_device"]
    ax.plot(
        [f[0] * scale for f in finished],
        [devices.index(f[1]) for f in finished],
        "kx",
        ms=6,
        label="request finished on the device (service unavailable)",
    )
    ax.axvline(0, color="black", lw=1.5, label=f"kill -9 {failover['victim']}")
    if failover["will_at"] is not None:
        will = (failover["will_at"] - zero) * scale
        ax.axvline(will, color="red", ls="--", lw=1, label="its will")
    ax.set_yticks(range(len(devices)), devices, fontsize=7)
    ax.set_xlim(*window)


def plot_failover(report: dict[str, Any], path: Path) -> None:
    """Each device a row over time: colored by its serving instance while offloading, hatched
    while local; the kill, the will, and the requests finished on the device. Left the whole
    run in seconds; right the moments around the kill in milliseconds."""
    plt = _pyplot()
    failover = report["failover"]
    zero, stop = failover["killed_at"], failover["stop"]
    colors = {name: f"C{i}" for i, name in enumerate(failover["instances"])}
    rows = len(failover["timelines"])
    back = [d.get("local_from_kill_s", 0) + (d.get("local_s") or 0) for d in failover["per_device"]]
    zoom = max(back, default=0.0) < 0.5  # the local periods would not show in seconds
    fig, axes = plt.subplots(
        1,
        2 if zoom else 1,
        figsize=(15 if zoom else 11, 0.32 * rows + 2.2),
        gridspec_kw={"width_ratios": [3, 2] if zoom else [1]},
        squeeze=False,
    )
    ax = axes[0][0]
    _timeline_panel(ax, failover, colors, 1.0, (failover["start"] - zero, stop - zero))
    ax.set_xlabel("seconds from the kill")
    if zoom:
        zx = axes[0][1]
        span_ms = max(20.0, 1300 * max(back, default=0.0))
        _timeline_panel(zx, failover, colors, 1000.0, (-0.15 * span_ms, span_ms))
        zx.set_xlabel("milliseconds from the kill")
    else:
        zx = ax
    for name, color in colors.items():
        zx.broken_barh([(0, 0)], (0, 0), color=color, label=f"offloading to {name}")
    zx.broken_barh(
        [(0, 0)], (0, 0), facecolor="white", edgecolor="black", hatch="///", label="local"
    )
    zx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    delays = failover["reassigned_after_will_s"]
    fig.suptitle(
        f"bench fleet failover: {failover['devices']} devices on {len(colors)} instances; "
        f"back to offloading at most {delays['max']} s after the will, "
        f"{failover['requests']['missing']} lost; {_caption(report)}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
