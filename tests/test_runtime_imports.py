"""The service and devices start small: no TensorFlow at run time."""

from __future__ import annotations

import subprocess
import sys
import tempfile


def test_service_and_device_never_import_tensorflow() -> None:
    code = """
import sys, asyncio
from sciot_mqtt.cli import build_parser
from sciot_mqtt.service import Service
from sciot_mqtt.service.engine import InferenceEngine
from sciot_mqtt.device import Device
from sciot_mqtt.models.catalog import resolve_packages
from sciot_mqtt.models import SegmentRunner
packages = resolve_packages(["fomo96"])
runner = SegmentRunner(packages["fomo96"])
runner.warm_up()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(heavy)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_up_runs_without_the_optional_dependencies() -> None:
    """`up` (the service, no swarm) needs neither the swarm's nor the benchmarks' extras:
    with them made unimportable, the service still starts and serves a lifecycle."""
    code = """
import asyncio, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rich", "psutil", "matplotlib", "PIL", "tensorflow", "aiohttp"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
from sciot_mqtt.cli import build_parser
from sciot_mqtt.broker import EmbeddedBroker
from sciot_mqtt.models.catalog import resolve_packages
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
build_parser().parse_args(["up"])
# `up --dashboard` without its extra stops before starting, naming the install command.
from sciot_mqtt._optional import require_extra
from sciot_mqtt.errors import ConfigurationError
try:
    require_extra("dashboard", "up --dashboard")
    raise SystemExit("aiohttp was not blocked")
except ConfigurationError as exc:
    assert "sciot-mqtt[dashboard]" in str(exc), exc

async def main():
    packages = resolve_packages(["fomo96"], sys.argv[1])
    async with EmbeddedBroker(port=0) as broker:
        async with Service(ServiceSettings(_env_file=None), broker.address, packages=packages) as s:
            await s.connected(timeout=20)
    print("served")

asyncio.run(main())
"""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(
            [sys.executable, "-c", code, cache],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
    assert out.stdout.strip().splitlines()[-1] == "served", out.stdout + out.stderr
