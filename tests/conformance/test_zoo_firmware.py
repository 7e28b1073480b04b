"""The Python device and the host firmware on test-zoo models that are not FOMO grids (a
DS-CNN keyword spotter on 49x10x1 features, a two-branch regressor with a float32
interface, MobileNetV3-Small), side by side against one real service on Mosquitto.

Both devices get the same input: the Python device as a ``.npy`` array of the model's input
shape and type (passed through as is), the firmware as the same bytes raw (``--input``; a
float32 model's frames are float32 little-endian). At the pinned split both must send the
same ``infer`` tensors byte for byte, get the same ``result``, and find every answer equal
to their own local run (``all_match_local``); all of it equal to LiteRT on that input.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from sciot_mqtt.broker import MosquittoBroker
from sciot_mqtt.models.export import export_blob
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing.probe import MqttProbe
from sciot_mqtt.transport import Inbound
from tests.conformance.conftest import HB_INTERVAL, ROOT
from tests.processes import spawn
from tests.zoo.builders import ZOO, ZooModels, representative

pytestmark = pytest.mark.slow

COUNT = 3


def _own_input(name: str, package: ModelPackage) -> np.ndarray:
    """One input from the model's own float range, in the type the model takes."""
    (spec,) = package.inputs
    sample = representative(ZOO[name], spec.shape[1:], n=1).reshape(spec.shape)
    if spec.np_dtype == np.float32:
        return sample.astype(np.float32)
    return np.clip(np.round(sample / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)


def _unpack(message: Inbound) -> dict[str, Any]:
    value: dict[str, Any] = msgpack.unpackb(message.payload, raw=False)
    return value


@pytest.fixture
def zoo_export(name: str, zoo_models: ZooModels, tmp_path: Path) -> tuple[ModelPackage, Path]:
    """The model built, prepared and exported before `probe` connects: TensorFlow's
    conversion blocks the event loop for longer than a keepalive."""
    package = zoo_models.package(name)
    blob = tmp_path / f"{name}.bin"
    blob.write_bytes(export_blob(package))
    return package, blob


@pytest.mark.parametrize("name", ["ds_cnn_kws", "two_branch_float", "mobilenet_v3_small"])
async def test_python_device_and_host_firmware_agree_on_a_zoo_model(
    name: str,
    zoo_export: tuple[ModelPackage, Path],
    firmware_binary: Path,
    mosquitto: MosquittoBroker,
    probe: MqttProbe,
    tmp_path: Path,
) -> None:
    package, blob = zoo_export
    frame = _own_input(name, package)
    (tmp_path / "inputs").mkdir()
    np.save(tmp_path / "inputs" / "frame.npy", frame)
    raw = tmp_path / "frame.raw"
    raw.write_bytes(np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<")).tobytes())
    split = package.num_ops // 2
    settings = ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        instance="zoo",
        heartbeat_interval=HB_INTERVAL,
        stats_interval=0.5,
        offline_grace=1.0,
        keepalive=5,
        split=split,
        models=[name],
    )
    address = mosquitto.address
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIOT_")}
    common = ["--host", address.host, "--port", str(address.port), "--count", str(COUNT),
              "--interval", "0.1", "--wait", "20", "--result-timeout", "10"]  # fmt: skip
    python = [sys.executable, "-m", "sciot_mqtt", "device", "--id", "py-zoo", *common,
              "--models", name, "--inputs", str(tmp_path / "inputs"),
              "--model-cache", str(package.directory.parent), "--log-format", "json"]  # fmt: skip
    python_env = env | {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    firmware = [str(firmware_binary), "--id", "fw-zoo", *common, "--model", str(blob),
                "--input", str(raw)]  # fmt: skip
    sent: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    summaries: dict[str, Any] = {}
    async with Service(settings, address, packages={name: package}) as service:
        await service.connected(timeout=10)
        async with contextlib.AsyncExitStack() as stack:
            children = {
                "py-zoo": await stack.enter_async_context(
                    spawn(python, python_env, tmp_path, "py-zoo")
                ),
                "fw-zoo": await stack.enter_async_context(spawn(firmware, env, tmp_path, "fw-zoo")),
            }
            for device, child in children.items():
                topic = f"sciot/v1/dev/{device}"
                sent[device] = _unpack(
                    await probe.expect(f"{topic}/infer/{service.instance}", timeout=60)
                )
                results[device] = _unpack(await probe.expect(f"{topic}/result", timeout=30))
                assert await child.wait(60) == 0, child.output()[-3000:]
                summaries[device] = child.last_json_line()["inference"]
    for device, inference in summaries.items():
        # (the first inference may run before the assignment arrives, locally)
        assert inference["offloaded"] >= COUNT - 1, (device, inference)
        assert inference["all_match_local"] is True, (device, inference)
    py, fw = sent["py-zoo"], sent["fw-zoo"]
    assert py["split"] == fw["split"] == split and py["model"] == fw["model"] == name
    assert set(py) == set(fw)
    for a, b in zip(py["tensors"], fw["tensors"], strict=True):
        assert a == b  # index, dtype, shape, scale, zero point and every byte
    assert results["py-zoo"]["output"] == results["fw-zoo"]["output"]
    assert set(results["py-zoo"]) == set(results["fw-zoo"])
    # ... and both are what LiteRT computes on that input
    runner = SegmentRunner(package)
    head, _ = runner.run_head(split, frame)
    at_split = {t.index: head[t.name] for t in package.boundaries[split].tensors}
    assert {t["index"] for t in fw["tensors"]} == set(at_split)
    for tensor in fw["tensors"]:
        assert tensor["data"] == np.ascontiguousarray(at_split[tensor["index"]]).tobytes()
    assert results["fw-zoo"]["output"]["data"] == np.asarray(runner.run_whole(frame)).tobytes()
