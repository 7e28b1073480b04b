"""`sciot-mqtt bench split --model ID` measures any prepared model, not only fomo96."""

from __future__ import annotations

import json
from pathlib import Path

from tests.processes import spawn
from tests.zoo.builders import ZooModels


async def test_bench_split_measures_a_prepared_keyword_spotter(
    zoo_models: ZooModels, cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    package = zoo_models.package("ds_cnn_kws")
    out = tmp_path / "out"
    bench = [
        *cli,
        "bench",
        "split",
        "--model",
        package.model_id,
        "--model-cache",
        str(zoo_models.cache),
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--brokers",
        "amqtt",
        "--out",
        str(out),
    ]
    async with spawn(bench, cli_env, tmp_path, "bench") as child:
        assert await child.wait(timeout=240) == 0, child.output()
    report = json.loads((out / "split.json").read_text())
    assert report["config"]["model"] == package.model_id
    assert report["config"]["ops"] == package.num_ops
    rows = report["brokers"]["amqtt"]
    assert [r["split"] for r in rows] == list(package.split_points)
    for row in rows:
        assert row["tensor_bytes"] == package.boundaries[row["split"]].nbytes
        if row["split"] < package.num_ops:  # every request answered by the service
            assert row["not_offloaded"] == 0 and row["latency_ms"]["p50"] > 0, row
    assert (out / "split.png").stat().st_size > 0
    printed = child.log.with_suffix(".out").read_text()
    assert f"saved {out / 'split.json'}" in printed
