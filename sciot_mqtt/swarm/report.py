"""The swarm's report: `report.json` (all figures), `inferences.csv` (one row per inference),
PNG plots, and `summary.md` in plain words."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.swarm.worker import ROW_FIELDS

__all__ = ["build_figures", "read_rows", "write_report"]

PLOTS = {
    "latency": "latency percentiles over time",
    "splits": "split chosen per device over time",
    "offload": "offload ratio over time",
    "bytes": "bytes on the wire",
    "service": "service CPU and memory",
    "broker": "broker message rate",
}


def read_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Rows from the workers' CSV parts, typed again."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        with path.open(newline="") as f:
            for raw in csv.DictReader(f):
                rows.append(_typed(raw))
    rows.sort(key=lambda r: (r["t_s"], r["device"]))
    return rows


def _typed(raw: Mapping[str, str]) -> dict[str, Any]:
    def number(text: str) -> float | None:
        return None if text == "" else float(text)

    ok = raw["ok"]
    return {
        "device": raw["device"],
        "compute": raw["compute"],
        "link": raw["link"],
        "t_s": float(raw["t_s"]),
        "seq": int(raw["seq"]),
        "split": int(raw["split"]),
        "path": raw["path"],
        "reason": raw["reason"],
        "sent_bytes": int(raw["sent_bytes"]),
        "queue_ms": float(raw["queue_ms"]),
        "device_ms": float(raw["device_ms"]),
        "transfer_ms": number(raw["transfer_ms"]),
        "edge_ms": number(raw["edge_ms"]),
        "total_ms": float(raw["total_ms"]),
        "ok": None if ok == "" else ok == "True",
        "model": raw.get("model", ""),
        "result": raw.get("result", ""),
    }


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "count": len(values),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
        "mean": round(float(arr.mean()), 3),
    }


def build_figures(
    rows: Sequence[Mapping[str, Any]],
    *,
    started: int,
    duration_s: float,
    samples: Sequence[Mapping[str, Any]],
    churn: Mapping[str, int],
) -> dict[str, Any]:
    done = [r for r in rows if r["path"] != "failed"]
    paths = Counter(r["path"] for r in rows)
    failures = Counter(r["reason"] for r in rows if r["path"] == "failed")
    fallbacks = Counter(r["reason"] for r in rows if r["path"] == "fallback")
    verified = [r for r in rows if r["ok"] is not None]

    def by(key: str) -> dict[str, Any]:
        groups: dict[str, list[float]] = {}
        for r in done:
            groups.setdefault(str(r[key]), []).append(r["total_ms"])
        return {name: _percentiles(v) for name, v in sorted(groups.items())}

    def component(name: str) -> dict[str, float] | None:
        return _percentiles([r[name] for r in done if r[name] is not None])

    def series(key: str) -> dict[str, float] | None:
        values = [s[key] for s in samples if s.get(key) is not None]
        if not values:
            return None
        return {
            "mean": round(float(np.mean(values)), 2),
            "max": round(float(np.max(values)), 2),
            "first": round(float(values[0]), 2),
            "last": round(float(values[-1]), 2),
        }

    offloaded = paths["offload"]
    return {
        "inferences": {
            "started": started,
            "recorded": len(rows),
            "answered": offloaded,
            "local": paths["local"],
            "fell_back": paths["fallback"],
            "failed": paths["failed"],
            "lost": started - len(rows),
            "fallback_reasons": dict(fallbacks),
            "failure_reasons": dict(failures),
            "rate_per_s": round(len(rows) / duration_s, 2) if duration_s else None,
        },
        "latency_ms": _percentiles([r["total_ms"] for r in done]),
        "latency_ms_by_path": by("path"),
        "latency_ms_by_link": by("link"),
        "latency_ms_by_compute": by("compute"),
        "queue_ms": component("queue_ms"),
        "device_ms": component("device_ms"),
        "transfer_ms": component("transfer_ms"),
        "edge_ms": component("edge_ms"),
        "offload_ratio": round(offloaded / len(done), 4) if done else None,
        "splits": {str(k): v for k, v in sorted(Counter(r["split"] for r in done).items())},
        "bytes_sent": sum(r["sent_bytes"] for r in rows),
        "results_by_model": _results_by_model(done),
        "verified": {
            "checked": len(verified),
            "identical_to_local": sum(1 for r in verified if r["ok"]),
        },
        "churn": dict(churn),
        "service": {
            "cpu_percent": series("service_cpu_percent"),
            "rss_mb": series("service_rss_mb"),
            "open_fds": series("service_fds"),
        },
        "cpu_percent_elsewhere": {
            "broker": series("broker_cpu_percent"),
            "swarm_workers": series("workers_cpu_percent"),
        },
        "broker_messages_per_s": {
            "received": series("broker_rx_per_s"),
            "sent": series("broker_tx_per_s"),
        },
    }


def _results_by_model(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per model, how often each result came out (best class, objects found, or raw)."""
    counts: dict[str, Counter[str]] = {}
    for r in rows:
        counts.setdefault(r["model"], Counter())[r["result"]] += 1
    return {model: dict(c.most_common()) for model, c in sorted(counts.items())}


def write_report(
    directory: Path,
    rows: Sequence[Mapping[str, Any]],
    figures: Mapping[str, Any],
    meta: Mapping[str, Any],
    samples: Sequence[Mapping[str, Any]],
) -> list[Path]:
    """Everything into `directory`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    csv_path = directory / "inferences.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    written.append(csv_path)
    plots = _plot(directory, rows, samples, meta)
    written += plots
    report = {**meta, "figures": figures, "plots": [p.name for p in plots], "samples": samples}
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    written.append(json_path)
    summary = directory / "summary.md"
    summary.write_text(_summary(figures, meta, [p.name for p in plots]))
    written.append(summary)
    return written


# --- plots -------------------------------------------------------------------------------


def _bins(rows: Sequence[Mapping[str, Any]], width: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray([r["t_s"] for r in rows], dtype=float)
    if not len(t):
        return t, np.asarray([], dtype=int)
    index = np.floor(np.maximum(t, 0) / width).astype(int)
    return t, index


def _plot(
    directory: Path,
    rows: Sequence[Mapping[str, Any]],
    samples: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "the swarm report's plots need matplotlib: pip install 'sciot-mqtt[bench]'"
        ) from exc

    duration = float(meta["config"]["duration_s"])
    width = max(1.0, duration / 60)
    done = [r for r in rows if r["path"] != "failed"]
    title = f"{meta['config']['devices']} devices, {meta['config']['network']} links"
    out: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.suptitle(f"{PLOTS[name]} ({title})", fontsize=10)
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)

    _, index = _bins(done, width)
    lat = np.asarray([r["total_ms"] for r in done], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    if len(lat):
        xs, p50, p90, p99 = [], [], [], []
        for b in np.unique(index):
            values = lat[index == b]
            xs.append((b + 0.5) * width)
            p50.append(np.percentile(values, 50))
            p90.append(np.percentile(values, 90))
            p99.append(np.percentile(values, 99))
        ax.plot(xs, p50, label="p50")
        ax.plot(xs, p90, label="p90")
        ax.plot(xs, p99, label="p99")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("time (s)")
    ax.set_ylabel("end-to-end latency (ms)")
    save(fig, "latency")

    # Devices grouped by profile (chip, then link), each group labelled once; one colour per
    # split value that occurs (there are few), so neighbouring splits never look alike.
    profile_of = {r["device"]: (r["compute"], r["link"]) for r in done}
    devices = sorted(profile_of, key=lambda d: (profile_of[d], d))
    shown = devices[:: max(1, math.ceil(len(devices) / 60))]
    position = {d: i for i, d in enumerate(shown)}
    points = [r for r in done if r["device"] in position]
    fig, ax = plt.subplots(figsize=(9, max(3.6, 1.2 + 0.12 * len(shown))))
    if points:
        values = sorted({r["split"] for r in points})
        palette = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
        for i, value in enumerate(values):
            chosen = [r for r in points if r["split"] == value]
            ax.scatter(
                [r["t_s"] for r in chosen],
                [position[r["device"]] for r in chosen],
                color=palette(i % palette.N),
                s=8,
                marker="s",
                label=f"split {value}",
            )
        ax.legend(
            title="split (0: raw input sent; N: all on the device)",
            fontsize=7,
            title_fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1),
        )
        starts = [
            i for i, d in enumerate(shown) if i == 0 or profile_of[d] != profile_of[shown[i - 1]]
        ]
        ax.set_yticks(starts, [" / ".join(profile_of[shown[i]]) for i in starts], fontsize=7)
        for i in starts[1:]:
            ax.axhline(i - 0.5, color="#ccc", linewidth=0.6)
        ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"devices by chip / link ({len(shown)} of {len(devices)})")
    save(fig, "splits")

    # Where results were computed, per time bin: stacked counts below, the offloaded share
    # above, on axes of their own (one y scale each) with legends outside the bars.
    all_t, all_index = _bins(rows, width)
    fig, (share_ax, count_ax) = plt.subplots(
        2, 1, figsize=(9, 4.8), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    if len(all_t):
        xs, ratio = [], []
        kinds = ("offload", "local", "fallback", "failed")
        counts: dict[str, list[int]] = {k: [] for k in kinds}
        for b in np.unique(all_index):
            members = [rows[int(i)] for i in np.flatnonzero(all_index == b)]
            xs.append((b + 0.5) * width)
            for k in kinds:
                counts[k].append(sum(1 for r in members if r["path"] == k))
            total = len(members) - counts["failed"][-1]
            ratio.append(counts["offload"][-1] / total if total else 0)
        share_ax.plot(xs, ratio, color="black")
        share_ax.set_ylim(0, 1.05)
        share_ax.set_ylabel("offloaded / done")
        bottom = np.zeros(len(xs))
        for k in kinds:
            count_ax.bar(xs, counts[k], width=width * 0.9, bottom=bottom, label=k)
            bottom += np.asarray(counts[k])
        count_ax.set_ylim(0, max(1.0, float(bottom.max())) * 1.1)  # headroom: no clipped bar
        count_ax.set_ylabel(f"inferences per {width:g} s")
        count_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, title="computed")
    count_ax.set_xlabel("time (s)")
    save(fig, "offload")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    if len(all_t):
        sent = np.asarray([r["sent_bytes"] for r in rows], dtype=float)
        xs = [(b + 0.5) * width for b in np.unique(all_index)]
        kbps = [sent[all_index == b].sum() * 8 / width / 1000 for b in np.unique(all_index)]
        ax.plot(xs, kbps)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("device -> service (kbit/s)")
    save(fig, "bytes")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    st = [s for s in samples if s.get("service_cpu_percent") is not None]
    if st:
        ax.plot([s["t_s"] for s in st], [s["service_cpu_percent"] for s in st], label="CPU %")
        ax.set_ylabel("service CPU (% of one core)")
        twin = ax.twinx()
        twin.plot(
            [s["t_s"] for s in st], [s["service_rss_mb"] for s in st], color="C1", label="RSS"
        )
        twin.set_ylabel("service RSS (MB)")
        ax.legend(loc="upper left")
        twin.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "service not measured (external)", ha="center", transform=ax.transAxes)
    ax.set_xlabel("time (s)")
    save(fig, "service")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    br = [s for s in samples if s.get("broker_rx_per_s") is not None]
    if br:
        ax.plot([s["t_s"] for s in br], [s["broker_rx_per_s"] for s in br], label="received")
        tx = [s for s in br if s.get("broker_tx_per_s") is not None]
        ax.plot([s["t_s"] for s in tx], [s["broker_tx_per_s"] for s in tx], label="sent")
        ax.legend()
    else:
        ax.text(
            0.5, 0.5, "the broker published no $SYS counters", ha="center", transform=ax.transAxes
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("broker messages / s")
    save(fig, "broker")
    return out


# --- summary -----------------------------------------------------------------------------


def _ms(figure: Mapping[str, float] | None, key: str) -> str:
    return "n/a" if figure is None else f"{figure[key]:.1f} ms"


def _summary(figures: Mapping[str, Any], meta: Mapping[str, Any], plots: list[str]) -> str:
    cfg = meta["config"]
    inf = figures["inferences"]
    lat = figures["latency_ms"]
    lines = [
        "# Swarm run",
        "",
        f"{cfg['devices']} simulated devices ran for {cfg['duration_s']:g} s against "
        f"{meta['broker']} and {meta['service']}, over {cfg['network_description']}. "
        f"Command: `{meta['command']}`.",
        "",
        "## What happened",
        "",
        f"- **{inf['started']} inferences were started and {inf['lost']} were lost.** "
        f"{inf['answered']} were answered by the service, {inf['local']} ran locally by "
        f"decision, {inf['fell_back']} fell back to local, and {inf['failed']} failed "
        "with a reason.",
    ]
    if inf["fallback_reasons"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in inf["fallback_reasons"].items())
        lines.append(f"- Fallbacks by reason: {reasons}.")
    if inf["failure_reasons"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in inf["failure_reasons"].items())
        lines.append(f"- Failures by reason: {reasons}.")
    lines += [
        f"- End-to-end latency (input to result, on the device): p50 {_ms(lat, 'p50')}, "
        f"p99 {_ms(lat, 'p99')}, max {_ms(lat, 'max')}; {inf['rate_per_s']} inferences/s "
        "overall.",
        f"- Offload ratio {figures['offload_ratio']}; splits chosen (split: count): "
        + ", ".join(f"{k}: {v}" for k, v in figures["splits"].items())
        + ".",
    ]
    v = figures["verified"]
    if v["checked"]:
        lines.append(
            f"- {v['identical_to_local']} of {v['checked']} results checked against a local "
            "run were bit-identical."
        )
    churn = figures["churn"]
    if churn.get("leaves") or churn.get("crashes"):
        lines.append(
            f"- Churn: {churn['joins']} joins, {churn['leaves']} clean leaves, "
            f"{churn['crashes']} crashes without a disconnect."
        )
    svc = figures["service"]
    if svc["cpu_percent"]:
        lines.append(
            f"- Service: CPU mean {svc['cpu_percent']['mean']:.0f} % of one core "
            f"(max {svc['cpu_percent']['max']:.0f} %), RSS {svc['rss_mb']['first']:.0f} -> "
            f"{svc['rss_mb']['last']:.0f} MB (max {svc['rss_mb']['max']:.0f} MB)."
        )
    elsewhere = figures["cpu_percent_elsewhere"]
    if elsewhere["swarm_workers"]:
        broker_cpu = elsewhere["broker"]
        lines.append(
            f"- CPU of the simulated devices (all worker processes): mean "
            f"{elsewhere['swarm_workers']['mean']:.0f} % of one core"
            + (f"; broker: {broker_cpu['mean']:.0f} %." if broker_cpu else ".")
        )
    rx = figures["broker_messages_per_s"]["received"]
    if rx:
        lines.append(
            f"- Broker: {rx['mean']:.0f} messages/s received on average, {rx['max']:.0f} at most."
        )
    lines += ["", "## By link and compute profile", ""]
    lines += ["| group | inferences | p50 (ms) | p99 (ms) |", "|---|---|---|---|"]
    for key in ("latency_ms_by_link", "latency_ms_by_compute"):
        for name, fig in figures[key].items():
            if fig:
                lines.append(f"| {name} | {fig['count']} | {fig['p50']:.1f} | {fig['p99']:.1f} |")
    lines += ["", "## Plots", ""]
    lines += [f"- [{PLOTS[Path(p).stem]}]({p})" for p in plots]
    lines += ["", f"Machine: {meta['machine']['summary']}.", ""]
    return "\n".join(lines)
