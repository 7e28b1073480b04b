"""`sciot-mqtt swarm` as a user runs it: broker, service and workers as real processes, links
through the proxy, and a report whose figures add up."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.processes import spawn


async def test_swarm_writes_a_report_that_accounts_for_every_inference(
    cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    mix = tmp_path / "mix.toml"
    mix.write_text(
        'compute = { host = 1, "esp32s3:0.05" = 1 }\n'
        "links = { wifi = 1, lte = 1 }\n"
        "[workload]\nrate_hz = 2\n"
        "[churn]\njoin_over_s = 4\ncrash_per_min = 6\nrejoin_after_s = 0.5\n"
    )
    report = tmp_path / "report"
    argv = [
        *cli, "swarm", "--devices", "8", "--duration", "8", "--mix", str(mix),
        "--network", "proxy", "--report", str(report), "--processes", "2", "--no-live",
    ]  # fmt: skip
    async with spawn(argv, cli_env, tmp_path, "swarm") as swarm:
        assert await swarm.wait(180) == 0, swarm.output()[-3000:]
        printed = swarm.last_json_line()
    data = json.loads((report / "report.json").read_text())
    figures = data["figures"]
    inferences = figures["inferences"]
    assert inferences["lost"] == 0 == printed["lost"]
    assert inferences["started"] == inferences["recorded"] > 0
    assert inferences["started"] == (
        inferences["answered"]
        + inferences["local"]
        + inferences["fell_back"]
        + inferences["failed"]
    )
    assert inferences["answered"] > 0
    assert data["config"]["processes"] == 2 and data["config"]["network"] == "proxy"
    assert data["machine"]["cores"] and data["command"].startswith("sciot-mqtt swarm")
    with (report / "inferences.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == inferences["recorded"]
    assert {r["link"] for r in rows} == {"wifi", "lte"}
    assert {r["device"] for r in rows} == {f"swarm-{i}" for i in range(8)}
    # Joins spread over the whole swarm's 4 s, whichever worker a device runs in: each
    # device's first request (one every 0.5 s) comes soon after its turn.
    first = {
        d: min(float(r["t_s"]) for r in rows if r["device"] == d)
        for d in {r["device"] for r in rows}
    }
    assert max(first.values()) < 4 + 0.5 + 1.0, first
    for name in ("latency", "splits", "offload", "bytes", "service", "broker"):
        png = report / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.name in data["plots"]
    # The service was measured, and Mosquitto's $SYS counters sampled.
    assert figures["service"]["rss_mb"]["max"] > 10
    assert figures["broker_messages_per_s"]["received"]["max"] > 0
    summary = (report / "summary.md").read_text()
    assert f"{inferences['started']} inferences were started and 0 were lost" in summary
    assert "through a TCP proxy" in summary or "TCP proxy" in summary
