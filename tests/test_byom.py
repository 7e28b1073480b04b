"""The README's "Bring your own model", as a user runs it: a Keras keyword spotter with a
sidecar, `models split`, `up --models`, and `device --models --count` on its own feature
arrays, on an emulated ESP32-S3, as real processes sharing one model cache variable."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path

import numpy as np

from sciot_mqtt.broker import free_port, until_accepting
from sciot_mqtt.transport import BrokerAddress
from tests.processes import spawn
from tests.zoo.builders import ZOO, ZooModels, representative


async def test_a_users_classifier_served_end_to_end(
    zoo_models: ZooModels, cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    entry = ZOO["ds_cnn_kws"]
    keras_file = Path(shutil.copy(zoo_models.keras_file(entry.name), tmp_path / "kws.keras"))
    labels = list(entry.sidecar["labels"])
    keras_file.with_suffix(".json").write_text(json.dumps({"labels": labels}))
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, representative(entry, (49, 10, 1), n=32))
    features = tmp_path / "features"
    features.mkdir()
    for i, sample in enumerate(representative(entry, (49, 10), n=3)):
        np.save(features / f"clip{i}.npy", sample)
    env = {**cli_env, "SCIOT_MODEL_CACHE": str(tmp_path / "cache")}

    split = [*cli, "models", "split", str(keras_file), "--representative", str(calibration)]
    async with spawn(split, env, tmp_path, "split") as child:
        assert await child.wait(timeout=300) == 0, child.output()
    printed = child.log.with_suffix(".out").read_text()
    assert "model kws" in printed and "read as classification (inferred" in printed

    port = free_port()
    up = [*cli, "up", "--port", str(port), "--models", "kws", "--heartbeat-interval", "1"]
    device = [
        *cli,
        "device",
        "--id",
        "mic-1",
        "--port",
        str(port),
        "--models",
        "kws",
        "--count",
        "9",
        "--split",
        "4",
        "--inputs",
        str(features),
        "--profile",
        "esp32s3:0.001",
    ]
    async with spawn(up, env, tmp_path, "up") as service:
        await asyncio.wait_for(until_accepting(BrokerAddress("127.0.0.1", port)), 30)
        async with spawn(device, env, tmp_path, "device") as mic:
            assert await mic.wait(timeout=120) == 0, mic.output()
        service.signal(signal.SIGTERM)
        assert await service.wait(timeout=10) == 0, service.output()
    summary = mic.last_json_line()
    inference = summary["inference"]
    assert isinstance(inference, dict)
    assert inference["all_match_local"] is True, inference
    assert inference["offloaded"] == 9 and inference["splits"] == {"4": 9}
    outputs = inference["outputs"]["classification"]
    assert outputs["count"] == 9 and set(outputs["top1"]) <= set(labels)
    # Three clips in turn: each one's answer three times.
    assert all(count % 3 == 0 for count in outputs["top1"].values())
    assert "emulated compute times are an estimate" in mic.output()
