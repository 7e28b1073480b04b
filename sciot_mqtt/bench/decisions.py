"""`sciot-mqtt bench decisions`: how good the service's split choices are.

For each emulated chip and link profile, on the embedded broker with the real service:

1. every split point is pinned in turn and its realized latency measured (the device's own
   input-to-result time): the **oracle** is the best fixed split of that sweep, measured
   again (with device-only) over as many inferences as the adaptive run is scored on;
2. a fresh device lets the service decide; its realized mean latency in steady state (after
   convergence) over the inferences run at the chosen split is compared with the oracle,
   with device-only, and with
   **SCIoT's rule** on the same inputs (argmin of device + bytes / bandwidth + edge over
   s >= 1: no latency term, never edge-only), scored by the fixed-split measurements;
3. step changes of link: inferences until the service's choice is right again (within 5 % of
   the new link's oracle).

Measuring runs (routine or variance probes: device-only runs; link checks of a device kept
local) are what keeps the model fresh; their cost is reported apart (`adaptive_all_ms`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.broker import EmbeddedBroker
from sciot_mqtt.device import Device
from sciot_mqtt.device.emulation import Emulation
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


async def _fixed_splits(
    address: BrokerAddress,
    package: ModelPackage,
    chip: str,
    link: str,
    repeats: int,
    confirm: int,
) -> tuple[list[float], dict[int, float]]:
    """Realized mean latency of every split point, pinned; then the best one and device-only
    again over `confirm` inferences, as many as the adaptive run is scored on."""
    images = _inputs(package, seed=1)
    name = f"fixed-{chip.replace(':', '_')}-{link}"
    device = _device(address, package, name, network=link, profile=chip)

    async def mean_at(split: int, count: int) -> float:
        device.settings.split = split
        await device.infer(next(images))  # warm-up: the device's first run of this split
        return float(np.mean([(await device.infer(next(images))).total_ms for _ in range(count)]))

    async with device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        sweep = [await mean_at(split, repeats) for split in package.split_points]
        best = int(np.argmin(sweep))
        confirmed = {s: await mean_at(s, confirm) for s in sorted({best, package.num_ops})}
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


async def _adaptive(
    service: Service,
    address: BrokerAddress,
    package: ModelPackage,
    chip: str,
    link: str,
    count: int,
    steady: int,
) -> dict[str, Any]:
    images = _inputs(package, seed=2)
    name = f"adaptive-{chip.replace(':', '_')}-{link}"
    device = _device(address, package, name, network=link, profile=chip)
    records = []
    async with device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        for _ in range(count):
            records.append(await device.infer(next(images)))
    record = service.registry.get(name)
    cost = record.cost if record is not None else None
    engine = service.engine
    assert cost is not None and engine is not None
    tail = records[-steady:]

    def measuring(r: Any) -> bool:
        return r.reason == "probe" or (r.decision_reason or "").startswith("checking the link")

    chosen = [r for r in tail if not measuring(r)]
    splits = [r.split for r in chosen]
    return {
        "mean_ms": float(np.mean([r.total_ms for r in chosen])),
        "mean_all_ms": float(np.mean([r.total_ms for r in tail])),
        "splits": {str(s): splits.count(s) for s in sorted(set(splits))},
        "probes": sum(r.reason == "probe" for r in tail),
        "link_checks": sum(measuring(r) and r.reason != "probe" for r in tail),
        "final_decision": None if device.decision is None else device.decision.model_dump(),
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
) -> dict[str, Any]:
    images = _inputs(package, seed=3)
    name = f"step-{chip.replace(':', '_')}-{before}-{after}"
    device = _device(address, package, name, network=before, profile=chip)
    async with device:
        await device.wait_until(lambda: device.mode == "offload", timeout=30)
        for _ in range(30):
            await device.infer(next(images))
        device.link.set_profile(after)
        trace = []
        for i in range(1, limit + 1):
            record = await device.infer(next(images))
            trace.append(record.split)
            decision = device.decision
            if decision is not None and decision.mode != "probe" and decision.split in good_after:
                return {"inferences": i, "trace": trace}
    return {"inferences": None, "trace": trace}


async def run_decisions_bench(
    package: ModelPackage,
    out: Path,
    *,
    links: tuple[str, ...] = LINKS,
    chips: tuple[str, ...] = CHIPS,
    repeats: int = 8,
    adaptive: int = 80,
    steady: int = 50,
) -> dict[str, Any]:
    settings = ServiceSettings(  # type: ignore[call-arg]
        _env_file=None, instance="bench", heartbeat_interval=1.0, models=[package.model_id]
    )
    report: dict[str, Any] = {
        "benchmark": "decisions",
        "command": "sciot-mqtt bench decisions " + " ".join(sys.argv[3:]),
        "machine": describe_machine(),
        "config": {
            "model": package.model_id,
            "ops": package.num_ops,
            "repeats_per_fixed_split": repeats,
            "adaptive_inferences": adaptive,
            "steady_state_inferences": steady,
            "broker": "embedded amqtt, service in process",
            "probe_probability": settings.probe_probability,
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
                        address, package, chip, link, repeats, steady
                    )
                    fixed_by[(chip, link)] = fixed
                    result = await _adaptive(
                        service, address, package, chip, link, adaptive, steady
                    )
                    oracle = int(np.argmin(fixed))
                    run = {
                        "chip": chip,
                        "link": link,
                        "fixed_ms": fixed,
                        "oracle_split": oracle,
                        "oracle_ms": confirmed[oracle],
                        "device_only_ms": confirmed[package.num_ops],
                        "adaptive_ms": result["mean_ms"],
                        "adaptive_all_ms": result["mean_all_ms"],
                        "vs_oracle": result["mean_ms"] / confirmed[oracle] - 1,
                        "vs_oracle_all": result["mean_all_ms"] / confirmed[oracle] - 1,
                        "sciot_split": result["sciot_split"],
                        # The re-measured figure where there is one, so equal splits score equal.
                        "sciot_ms": confirmed.get(
                            result["sciot_split"], fixed[result["sciot_split"]]
                        ),
                        "adaptive": result,
                    }
                    report["runs"].append(run)
                    print(
                        f"{chip:>14} {link:>9}: adaptive {run['adaptive_ms']:8.1f} ms, "
                        f"oracle s={oracle} {run['oracle_ms']:8.1f} ms "
                        f"({run['vs_oracle']:+.1%}; "
                        f"with measuring runs {run['vs_oracle_all']:+.1%}), "
                        f"SCIoT s={run['sciot_split']} "
                        f"{run['sciot_ms']:8.1f} ms, device-only {run['device_only_ms']:8.1f} ms",
                        flush=True,
                    )
            chip = chips[0]
            for before, after in STEPS:
                after_sweep = fixed_by.get((chip, after))
                if after_sweep is None:
                    continue
                good = {s for s, t in enumerate(after_sweep) if t <= GOOD * min(after_sweep)}
                step = await _step(service, address, package, chip, before, after, good, 40)
                step |= {"chip": chip, "from": before, "to": after, "good_splits": sorted(good)}
                report["steps"].append(step)
                print(f"step {before} -> {after}: right again after {step['inferences']}")
    (out / "decisions.json").write_text(json.dumps(report, indent=2))
    plot_decisions(report, out / "decisions.png")
    return report


def plot_decisions(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chips = sorted({r["chip"] for r in report["runs"]}, key=lambda c: c != "host")
    fig, axes = plt.subplots(1, len(chips), figsize=(6 * len(chips), 4.5), squeeze=False)
    for ax, chip in zip(axes[0], chips, strict=True):
        runs = [r for r in report["runs"] if r["chip"] == chip]
        x = np.arange(len(runs))
        width = 0.2
        for offset, (key, label) in enumerate(
            [
                ("adaptive_ms", "sciot-mqtt"),
                ("oracle_ms", "best fixed split"),
                ("sciot_ms", "SCIoT rule"),
                ("device_only_ms", "device only"),
            ]
        ):
            ax.bar(x + (offset - 1.5) * width, [r[key] for r in runs], width, label=label)
        ax.set_xticks(x, [r["link"] for r in runs])
        ax.set_yscale("log")
        ax.set_ylabel("realized mean latency (ms, log)")
        ax.set_title(f"chip {chip}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Split decisions: {report['config']['model']} "
        f"({report['machine']['cpu']}, {report['machine']['cores']} cores)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
