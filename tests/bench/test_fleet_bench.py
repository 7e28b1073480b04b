"""`sciot-mqtt bench fleet`, a short real run: instance processes on Mosquitto, light devices
in processes of their own, a kill -9 of the instance serving the most devices; the report's
shape, and nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

from sciot_mqtt.bench.light import OUTCOMES
from sciot_mqtt.models import ModelPackage
from tests.processes import spawn


async def test_bench_fleet_scales_and_records_a_failover_without_losses(
    sciot_models: dict[str, ModelPackage], cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    cache = sciot_models["fomo96"].directory.parent
    out = tmp_path / "out"
    bench = [*cli, "bench", "fleet", "--model-cache", str(cache), "--out", str(out)]
    bench += ["--instances", "1", "--step", "4x1", "--warmup", "0.5", "--duration", "1"]
    bench += ["--failover-instances", "2", "--failover-devices", "4"]
    bench += ["--failover-before", "1", "--failover-after", "5"]
    async with spawn(bench, cli_env, tmp_path, "bench") as child:
        assert await child.wait(timeout=120) == 0, child.output()[-3000:]
    report = json.loads((out / "fleet.json").read_text())
    assert report["lost"] == 0
    assert report["machine"]["cores"] and len(report["load_average_at_start"]) == 3
    assert "local" in report["definitions"]

    [point] = report["scaling"]
    assert point["instances"] == 1 and point["missing"] == 0
    assert point["answered_per_s"] > 0 and point["latency_ms"]["p99"] > 0
    assert set(point["cpu_ms_per_inference"]) == {"service", "broker", "devices"}
    assert set(point["answered_by_instance"]) == {"fleet-1"}

    failover = report["failover"]
    assert failover["victim"] in failover["instances"] == ["fleet-1", "fleet-2"]
    assert failover["will_at"] is not None and failover["will_at"] >= failover["killed_at"]
    requests = failover["requests"]
    assert requests["missing"] == 0 and requests["answered"] > 0
    assert requests["sent"] == sum(requests[k] for k in OUTCOMES)
    # Every device that was on the victim went local, then offloaded to the survivor.
    moved = [d for d in failover["per_device"] if d["at_kill"] == failover["victim"]]
    assert len(moved) == failover["devices_on_victim"] >= 1, failover["per_device"]
    survivor = next(n for n in failover["instances"] if n != failover["victim"])
    for device in moved:
        assert device["offloading_again_to"] == survivor, device
        assert device["reassigned_after_will_s"] is not None, device
        assert device["requests"]["missing"] == 0, device
    # Each device's timeline: [time, mode, instance] at each change; offloading (assigned)
    # when told to start sending, local until then.
    assert set(failover["timelines"]) == {f"fo-{i:02d}" for i in range(4)}
    for timeline in failover["timelines"].values():
        at_start = [e for e in timeline if e[0] <= failover["start"]][-1]
        assert at_start[1] == "offload" and at_start[2] in failover["instances"], timeline
    for name in ("fleet.png", "fleet-failover.png"):
        assert (out / name).stat().st_size > 0
    printed = child.log.with_suffix(".out").read_text()
    assert f"saved {out / 'fleet.json'}" in printed
