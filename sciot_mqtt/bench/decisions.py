"""`sciot-mqtt bench decisions`: how good the service's split choices are, as users see them.

For each emulated chip and link profile, on the embedded broker with the real service:

1. every split point is pinned in turn and its realized latency measured (the device's own
   input-to-result time): the **oracle** is the best fixed split of that sweep, measured
   again (with device-only) over as many inferences as the adaptive run is scored on;
2. a fresh device lets the service decide; the last `steady` inferences are scored as users
   see them: every inference's latency, including any wait behind a measurement (a probe run
   in its place, the chip or the link busy measuring), as mean and
   p50/p95/p99 against the oracle's; apart from that, the inferences run at the chosen split
   say whether the choice itself is right, and the device time and uplink bytes spent on
   measuring are counted against what users' inferences used. **SCIoT's rule** is applied to
   the same learnt inputs (argmin of device + bytes / bandwidth + edge over s >= 1: no latency
   term, never edge-only) and scored with the fixed-split measurements;
3. step changes of link: inferences until the service's choice is right again (within 5 % of
   the new link's oracle).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.broker import EmbeddedBroker
from sciot_mqtt.device import Device
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.device.inference import InferenceRecord
from sciot_mqtt.device.inputs import SyntheticInputs
from sciot_mqtt.machine import describe_machine
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.service import Service
from sciot_mqtt.service.decisions import DeviceCostModel
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from sciot_mqtt.transport import BrokerAddress

LINKS = ("5g", "wifi", "lte", "congested", "lossy")
CHIPS = ("esp32s3:0.05", "host")
STEPS = (("wifi", "congested"), ("congested", "wifi"), ("5g", "lte"))
GOOD = 1.05  # a choice is right when its realized latency is within 5 % of the oracle
# The counters of the device's summary that say what measuring cost (device/report.py).
MEASURING = (
    "user_uplink_bytes",
    "measure_uplink_bytes",
    "measure_device_ms",
    "refreshes",
    "refresh_device_ms",
    "refresh_mismatches",
    "echoes_sent",
    "echoes_answered",
)


def _device(address: BrokerAddress, package: ModelPackage, name: str, **settings: Any) -> Device:
    # The device announces the benchmarked model in its birth, whichever model that is.
    values: dict[str, Any] = {
        "result_timeout": 30.0,
        "heartbeat_interval": 1.0,
        "models": [package.model_id],
    } | settings
    device_settings = DeviceSettings(_env_file=None, id=name, **values)  # type: ignore[call-arg]
    return Device(
        device_settings,
        address,
        packages={package.model_id: package},
        emulation=Emulation.from_settings(device_settings),
    )


def _inputs(package: ModelPackage, seed: int) -> Iterator[np.ndarray]:
    """Endless synthetic inputs for the model (scenes for image models)."""
    source = SyntheticInputs(seed)
    while True:
        yield source.next_for(package)


def latency_figures(totals: Sequence[float]) -> dict[str, float]:
    """Mean and p50/p95/p99 of per-inference latencies (ms)."""
    values = np.asarray(totals, dtype=np.float64)
    return {
        "mean_ms": float(values.mean()),
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
    }


async def _fixed_splits(
    address: BrokerAddress,
    package: ModelPackage,
    chip: str,
    link: str,
    repeats: int,
    confirm: int,
    interval: float,
) -> tuple[list[float], dict[int, dict[str, float]]]:
    """Realized mean latency of every split point, pinned; then the best one and device-only
    again over `confirm` inferences, as many as the adaptive run is scored on."""
    images = _inputs(package, seed=1)
    name = f"fixed-{chip.replace(':', '_')}-{link}"
    device = _device(address, package, name, network=link, profile=chip)

    async def run_at(split: int, count: int) -> list[float]:
        device.settings.split = split
        await device.infer(next(images))  # warm-up: the device's first run of this split
        totals = []
        for _ in range(count):
            totals.append((await device.infer(next(images))).total_ms)
            if interval > 0:
                await asyncio.sleep(interval)
        return totals

    async with device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        sweep = [float(np.mean(await run_at(split, repeats))) for split in package.split_points]
        best = int(np.argmin(sweep))
        confirmed = {
            s: latency_figures(await run_at(s, confirm)) for s in sorted({best, package.num_ops})
        }
    return sweep, confirmed


def sciot_rule(cost: DeviceCostModel, edge_ms: list[float]) -> int:
    """SCIoT's choice: no link latency term, and never s = 0."""
    device_ms = cost.device.values()
    n = cost.n_ops
    best, best_cost = n, float("inf")
    for s in range(1, n + 1):
        transfer = cost.bytes_at[s] * cost.link.ms_per_byte if s < n else 0.0
        total = sum(device_ms[:s]) + transfer + sum(edge_ms[s:])
        if total < best_cost:
            best, best_cost = s, total
    return best


def is_measuring(record: InferenceRecord) -> bool:
    """An inference the service made measure: a probe run in place of the chosen split, or a
    user's inference run locally beside a link check's echo (a device kept local by cost)."""
    return record.reason == "probe" or (record.decision_reason or "").startswith(
        "checking the link"
    )


def _measuring_counters(device: Device) -> dict[str, float]:
    summary = device.summary()
    return {name: float(getattr(summary, name)) for name in MEASURING}


async def _adaptive(
    service: Service,
    address: BrokerAddress,
    package: ModelPackage,
    chip: str,
    link: str,
    count: int,
    steady: int,
    interval: float,
) -> dict[str, Any]:
    images = _inputs(package, seed=2)
    name = f"adaptive-{chip.replace(':', '_')}-{link}"
    device = _device(address, package, name, network=link, profile=chip)
    records = []
    async with device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        before: dict[str, float] = {}
        for i in range(count):
            if i == count - steady:
                before = _measuring_counters(device)
            records.append(await device.infer(next(images)))
            if interval > 0:
                await asyncio.sleep(interval)
        # Measurements under way at the end (an echo in flight, a refresh) still count.
        await device.settle_measurements(timeout=10)
        after = _measuring_counters(device)
        final = None if device.decision is None else device.decision.model_dump()
    record = service.registry.get(name)
    cost = record.cost if record is not None else None
    engine = service.engine
    assert cost is not None and engine is not None
    tail = records[-steady:]
    chosen = [r for r in tail if not is_measuring(r)]
    splits = [r.split for r in chosen]
    spent = {k: after[k] - before.get(k, 0.0) for k in MEASURING}
    # A link check's echo is counted as measuring by the device itself (`measure_uplink_bytes`);
    # the user's inference beside it ran locally and sent only its `timings`.
    # The device is busy serving users (input to result) and refreshing between them.
    busy_ms = sum(r.total_ms for r in tail) + spent["refresh_device_ms"]
    uplink = spent["user_uplink_bytes"] + spent["measure_uplink_bytes"]
    return {
        "users": latency_figures([r.total_ms for r in tail]),
        "chosen_ms": float(np.mean([r.total_ms for r in chosen])) if chosen else None,
        "splits": {str(s): splits.count(s) for s in sorted(set(splits))},
        "probes": sum(r.reason == "probe" for r in tail),
        "link_checks": sum(is_measuring(r) and r.reason != "probe" for r in tail),
        "measuring": spent
        | {
            "busy_ms": busy_ms,
            "device_share": spent["measure_device_ms"] / busy_ms if busy_ms else 0.0,
            "uplink_share": spent["measure_uplink_bytes"] / uplink if uplink else 0.0,
        },
        "final_decision": final,
        "sciot_split": sciot_rule(cost, list(engine.profiles[package.model_id].ms)),
        "link_estimate": {"latency_ms": cost.link.latency_ms, "kbps": cost.link.kbps},
    }


async def _step(
    service: Service,
    address: BrokerAddress,
    package: ModelPackage,
    chip: str,
    before: str,
    after: str,
    good_after: set[int],
    limit: int,
    interval: float,
) -> dict[str, Any]:
    images = _inputs(package, seed=3)
    name = f"step-{chip.replace(':', '_')}-{before}-{after}"
    device = _device(address, package, name, network=before, profile=chip)
    async with device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        for _ in range(30):
            await device.infer(next(images))
            if interval > 0:
                await asyncio.sleep(interval)
        device.link.set_profile(after)
        trace = []
        totals = []
        for i in range(1, limit + 1):
            record = await device.infer(next(images))
            trace.append(record.split)
            totals.append(record.total_ms)
            decision = device.decision
            if decision is not None and decision.mode != "probe" and decision.split in good_after:
                return {"inferences": i, "trace": trace, "totals_ms": totals}
            if interval > 0:
                await asyncio.sleep(interval)
    return {"inferences": None, "trace": trace, "totals_ms": totals}


def _run_line(run: dict[str, Any]) -> str:
    users, oracle = run["users"], run["oracle"]
    share = run["adaptive"]["measuring"]
    return (
        f"{run['chip']:>14} {run['link']:>9}: users mean {users['mean_ms']:7.1f} ms "
        f"({run['vs_oracle']['mean']:+.1%}), p95 {users['p95_ms']:7.1f} "
        f"({run['vs_oracle']['p95']:+.1%}); oracle s={run['oracle_split']} "
        f"{oracle['mean_ms']:7.1f} ms; chosen {run['chosen_vs_oracle']:+.1%}; "
        f"measuring {share['device_share']:.1%} of device time, "
        f"{share['uplink_share']:.1%} of uplink; SCIoT s={run['sciot_split']} "
        f"{run['sciot_ms']:7.1f} ms; device-only {run['device_only']['mean_ms']:7.1f} ms"
    )


async def run_decisions_bench(
    package: ModelPackage,
    out: Path,
    *,
    links: tuple[str, ...] = LINKS,
    chips: tuple[str, ...] = CHIPS,
    repeats: int = 8,
    adaptive: int = 80,
    steady: int = 50,
    interval: float = 0.0,
) -> dict[str, Any]:
    settings = ServiceSettings(  # type: ignore[call-arg]
        _env_file=None, instance="bench", heartbeat_interval=1.0, models=[package.model_id]
    )
    report: dict[str, Any] = {
        "benchmark": "decisions",
        "command": "sciot-mqtt bench decisions " + " ".join(sys.argv[3:]),
        "machine": describe_machine(),
        # Honest only on a quiet machine: the 1, 5 and 15 minute load averages, before and after.
        "load_average": {"start": list(os.getloadavg())},
        "config": {
            "model": package.model_id,
            "ops": package.num_ops,
            "repeats_per_fixed_split": repeats,
            "adaptive_inferences": adaptive,
            "steady_state_inferences": steady,
            "interval_s": interval,
            "broker": "embedded amqtt, service in process",
            "service_settings": settings.model_dump(
                include={"ema_alpha", "hysteresis_rel", "hysteresis_ms", "variance_window"}
                | {"variance_cv", "measure_budget"}
            ),
        },
        "runs": [],
        "steps": [],
    }
    fixed_by: dict[tuple[str, str], list[float]] = {}
    async with EmbeddedBroker(port=0) as broker:
        address = broker.address
        async with Service(settings, address, packages={package.model_id: package}) as service:
            await service.connected(timeout=30)
            for chip in chips:
                for link in links:
                    fixed, confirmed = await _fixed_splits(
                        address, package, chip, link, repeats, steady, interval
                    )
                    fixed_by[(chip, link)] = fixed
                    result = await _adaptive(
                        service, address, package, chip, link, adaptive, steady, interval
                    )
                    oracle = int(np.argmin(fixed))
                    best, local = confirmed[oracle], confirmed[package.num_ops]
                    users = result["users"]
                    sciot = result["sciot_split"]
                    run = {
                        "chip": chip,
                        "link": link,
                        "fixed_ms": fixed,
                        "oracle_split": oracle,
                        "oracle": best,
                        "device_only": local,
                        "users": users,
                        "vs_oracle": {
                            k.removesuffix("_ms"): users[k] / best[k] - 1
                            for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")
                        },
                        "vs_device_only": users["mean_ms"] / local["mean_ms"] - 1,
                        "chosen_vs_oracle": (result["chosen_ms"] or float("nan")) / best["mean_ms"]
                        - 1,
                        "sciot_split": sciot,
                        # The re-measured figure where there is one, so equal splits score equal.
                        "sciot_ms": confirmed[sciot]["mean_ms"]
                        if sciot in confirmed
                        else fixed[sciot],
                        "adaptive": result,
                    }
                    report["runs"].append(run)
                    print(_run_line(run), flush=True)
            chip = chips[0]
            for before, after in STEPS:
                after_sweep = fixed_by.get((chip, after))
                if after_sweep is None or (chip, before) not in fixed_by:
                    continue
                good = {s for s, t in enumerate(after_sweep) if t <= GOOD * min(after_sweep)}
                step = await _step(
                    service, address, package, chip, before, after, good, 40, interval
                )
                step |= {"chip": chip, "from": before, "to": after, "good_splits": sorted(good)}
                report["steps"].append(step)
                print(f"step {before} -> {after}: right again after {step['inferences']}")
    report["load_average"]["end"] = list(os.getloadavg())
    (out / "decisions.json").write_text(json.dumps(report, indent=2))
    plot_decisions(report, out / "decisions.png")
    return report


def plot_decisions(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chips = sorted({r["chip"] for r in report["runs"]}, key=lambda c: c != "host")
    fig, axes = plt.subplots(1, len(chips), figsize=(6.5 * len(chips), 4.5), squeeze=False)
    for ax, chip in zip(axes[0], chips, strict=True):
        runs = [r for r in report["runs"] if r["chip"] == chip]
        x = np.arange(len(runs))
        width = 0.2
        bars = [
            ("sciot-mqtt (users, measuring included)", [r["users"] for r in runs]),
            ("best fixed split", [r["oracle"] for r in runs]),
            ("device only", [r["device_only"] for r in runs]),
        ]
        for offset, (label, figures) in enumerate(bars):
            means = [f["mean_ms"] for f in figures]
            # A few slow outliers can put the mean above p95: no whisker then.
            p95 = [max(0.0, f["p95_ms"] - f["mean_ms"]) for f in figures]
            ax.bar(
                x + (offset - 1) * width,
                means,
                width,
                yerr=[[0] * len(means), p95],
                capsize=2,
                label=label,
            )
        ax.scatter(x + 2 * width, [r["sciot_ms"] for r in runs], marker="x", label="SCIoT rule")
        ax.set_xticks(x, [r["link"] for r in runs])
        ax.set_yscale("log")
        ax.set_ylabel("latency users see (ms, log): mean, whisker to p95")
        ax.set_title(f"chip {chip}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Split decisions: {report['config']['model']} "
        f"({report['machine']['cpu']}, {report['machine']['cores']} cores)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
