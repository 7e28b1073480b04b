"""Conformance: the same scenarios against the Python device and the C firmware (host build).

Both run as real processes (`python -m sciot_mqtt device` and `sciot-fw-host`) on one
Mosquitto broker with one real service; the tests watch the wire with an `MqttProbe`.
The firmware is built with CMake once per test session (into a temporary directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import pytest
import pytest_asyncio

from sciot_mqtt.broker import MosquittoBroker
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.protocol import ADDRESSED
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing.probe import MqttProbe
from sciot_mqtt.transport import BrokerAddress, Inbound
from tests.firmware.conftest import cmake_build
from tests.processes import Child, spawn

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware-bridge"
KINDS = ["python", "firmware"]
HB_INTERVAL = 0.5


def _missing_tools() -> str | None:
    if shutil.which("cmake") is None:
        return "cmake"
    if not Path("/usr/include/mosquitto.h").is_file():
        return "libmosquitto-dev"
    return None


@pytest.fixture(scope="session")
def firmware_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sciot-fw-host`, built from this checkout once per session."""
    missing = _missing_tools()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing: .ci/run installs it")
        pytest.skip(f"{missing} is missing (apt-get install cmake libmosquitto-dev)")
    build = cmake_build(FIRMWARE, tmp_path_factory.mktemp("fw-build"), "-DSCIOT_TESTS=OFF")
    return build / "sciot-fw-host"


@pytest.fixture(scope="session")
def model_blob(
    sciot_models: dict[str, ModelPackage], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from sciot_mqtt.models.export import export_blob

    path = tmp_path_factory.mktemp("fw-model") / "fomo96.blob"
    path.write_bytes(export_blob(sciot_models["fomo96"]))
    return path


@dataclass(frozen=True)
class Inputs:
    """One scene, as each device reads it: a .npy folder (Python), raw int8 (firmware)."""

    image: np.ndarray
    npy_dir: Path
    raw: Path
    quantized: np.ndarray


@pytest.fixture(scope="session")
def inputs(
    sciot_models: dict[str, ModelPackage], tmp_path_factory: pytest.TempPathFactory
) -> Inputs:
    from sciot_mqtt.models import SyntheticScenes

    image, _ = SyntheticScenes(seed=11).sample()
    base = tmp_path_factory.mktemp("fw-inputs")
    (base / "images").mkdir()
    np.save(base / "images" / "scene.npy", image)
    quantized = sciot_models["fomo96"].quantize_input(image)
    (base / "scene.int8").write_bytes(quantized.tobytes())
    return Inputs(image, base / "images", base / "scene.int8", quantized)


@pytest_asyncio.fixture
async def mosquitto() -> AsyncIterator[MosquittoBroker]:
    try:
        broker = MosquittoBroker()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    async with broker:
        yield broker


@pytest_asyncio.fixture
async def sciot_broker(mosquitto: MosquittoBroker) -> BrokerAddress:
    """Mosquitto only: the firmware's libmosquitto and the Python device on one real broker."""
    return mosquitto.address


@pytest.fixture
def sciot_service_settings() -> ServiceSettings:
    """A service that pins split 7 (two live tensors: a residual block) for determinism."""
    return ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        instance="conf",
        heartbeat_interval=HB_INTERVAL,
        stats_interval=0.5,
        offline_grace=1.0,
        keepalive=5,
        split=7,
    )


@pytest_asyncio.fixture
async def probe(sciot_broker: BrokerAddress) -> AsyncIterator[MqttProbe]:
    async with MqttProbe(sciot_broker, "sciot/v1/#", client_id="conformance-probe") as p:
        yield p


def unpack(message: Inbound) -> dict[str, Any]:
    value: dict[str, Any] = msgpack.unpackb(message.payload, raw=False)
    return value


@dataclass
class DeviceRun:
    """A device process and what it says on the wire."""

    kind: str
    device_id: str
    child: Child
    probe: MqttProbe
    summary: dict[str, Any] = field(default_factory=dict)
    # The instance its `infer` and `timings` go to (topics.md, "Fleet"): the service's.
    instance: str = "conf"

    def topic(self, last: str) -> str:
        to = f"/{self.instance}" if last in ADDRESSED else ""
        return f"sciot/v1/dev/{self.device_id}/{last}{to}"

    async def expect(
        self, last: str, where: Any = None, *, since: int = 0, timeout: float = 20.0
    ) -> dict[str, Any]:
        def match(message: Inbound) -> bool:
            try:
                payload = unpack(message)
            except Exception:
                return False
            return where is None or bool(where(payload))

        found = await self.probe.expect(self.topic(last), match, since=since, timeout=timeout)
        return unpack(found)

    def published(self, last: str, since: int = 0) -> list[dict[str, Any]]:
        return [
            unpack(m)
            for m in self.probe.messages[since:]
            if m.topic == self.topic(last) and m.payload
        ]

    def pause(self) -> None:
        self.child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.child.signal(signal.SIGCONT)

    async def stop(self) -> dict[str, Any]:
        """SIGTERM (if still running), then its summary line."""
        if self.child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.signal(signal.SIGCONT)
                self.child.signal(signal.SIGTERM)
        code = await self.child.wait(30)
        self.summary = self.child.last_json_line()
        # 255: asyncio's child watcher lost the exit status ("Unknown child process pid",
        # seen now and then under load); the summary line, printed last, shows a clean exit.
        assert code in (0, 255), self.child.output()[-3000:]
        return self.summary


@dataclass
class Launcher:
    broker: BrokerAddress
    probe: MqttProbe
    workdir: Path
    firmware: Path | None
    blob: Path | None
    inputs: Inputs
    model_cache: Path
    stack: contextlib.AsyncExitStack

    async def start(
        self,
        kind: str,
        device_id: str,
        *,
        count: int = 100_000,
        interval: float = 0.2,
        keepalive: int = 5,
        split: int | None = None,
        result_timeout: float = 5.0,
    ) -> DeviceRun:
        """A device that waits for the service, then runs `count` inferences of one scene."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCIOT_")}
        common = ["--id", device_id, "--host", self.broker.host, "--port", str(self.broker.port)]
        common += ["--count", str(count), "--interval", str(interval), "--wait", "20"]
        common += ["--result-timeout", str(result_timeout)]
        if split is not None:
            common += ["--split", str(split)]
        if kind == "python":
            env |= {
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT),
                "SCIOT_DEVICE_HEARTBEAT_INTERVAL": str(HB_INTERVAL),
                "SCIOT_DEVICE_KEEPALIVE": str(keepalive),
                "SCIOT_DEVICE_RECONNECT_MAX": "1.0",
            }
            argv = [sys.executable, "-m", "sciot_mqtt", "device", *common]
            argv += ["--images", str(self.inputs.npy_dir), "--model-cache", str(self.model_cache)]
            argv += ["--log-format", "json"]
        else:
            assert self.firmware is not None and self.blob is not None
            argv = [str(self.firmware), *common, "--model", str(self.blob)]
            argv += ["--input", str(self.inputs.raw), "--heartbeat-interval", str(HB_INTERVAL)]
            argv += ["--keepalive", str(keepalive), "--reconnect-max", "1.0"]
        child = await self.stack.enter_async_context(
            spawn(argv, env, self.workdir, f"{kind}-{device_id}")
        )
        return DeviceRun(kind, device_id, child, self.probe)


@pytest.fixture
def firmware_files(request: pytest.FixtureRequest) -> tuple[Path | None, Path | None]:
    """The host firmware and its model blob when the test runs the firmware.

    Built here, before `probe` connects: the build blocks the event loop for longer than a
    keepalive, and a probe connected during it is dropped by the broker without a word.
    """
    if "firmware" not in request.node.name and "both" not in request.node.name:
        return None, None
    return request.getfixturevalue("firmware_binary"), request.getfixturevalue("model_blob")


@pytest_asyncio.fixture
async def launcher(
    firmware_files: tuple[Path | None, Path | None],
    sciot_broker: BrokerAddress,
    probe: MqttProbe,
    tmp_path: Path,
    inputs: Inputs,
    sciot_models: dict[str, ModelPackage],
) -> AsyncIterator[Launcher]:
    firmware, blob = firmware_files
    cache = sciot_models["fomo96"].directory.parent
    async with contextlib.AsyncExitStack() as stack:
        yield Launcher(sciot_broker, probe, tmp_path, firmware, blob, inputs, cache, stack)
