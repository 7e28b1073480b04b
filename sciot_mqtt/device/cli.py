"""`sciot-mqtt device`: run a Python device that follows the contract."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path

from sciot_mqtt._commands import add_tls_flags, overrides, stop_when_ended, until_signalled
from sciot_mqtt.logs import configure_logging
from sciot_mqtt.settings import DeviceSettings

_DEVICE_FLAGS = (
    "id",
    "network",
    "profile",
    "emulation_seed",
    "host",
    "port",
    "kind",
    "models",
    "split",
    "result_timeout",
    "model_cache",
    "log_level",
    "log_format",
    "password_file",
    "tls_ca",
    "tls_cert",
    "tls_key",
)


def add_device_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("device", help="run a Python device that follows the contract")
    p.add_argument("--id", help="device id: letters, digits, _ . - (device-1)")
    p.add_argument("--host", help="broker host (127.0.0.1)")
    p.add_argument("--port", type=int, help="broker port (1883)")
    p.add_argument("--kind", help="device kind announced in birth (python)")
    p.add_argument("--models", help="comma-separated model ids it carries (fomo96)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--count", type=int, help="run this many inferences, then stop")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between inferences")
    p.add_argument("--split", type=int, help="pin the split point (0 = edge only, N = local)")
    p.add_argument(
        "--network",
        help="link to emulate: loopback (default), 5g, wifi, lte, congested, lossy, a .json "
        "profile, or a schedule such as wifi@0,lte@30",
    )
    p.add_argument(
        "--profile",
        help="compute to emulate: host (default), esp32s3[:SCALE][:DIST[:SPREAD]], or a .json",
    )
    p.add_argument("--emulation-seed", type=int, help="seed of the emulation (0)")
    p.add_argument(
        "--inputs",
        "--images",
        dest="inputs",
        type=Path,
        help="folder of inputs: .npy arrays of the model's input shape, or images of any "
        "size (PNG/JPEG/BMP need Pillow); default: synthetic inputs for the model",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (0)")
    p.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the service before --count"
    )
    p.add_argument("--result-timeout", type=float, help="seconds before finishing locally (5)")
    p.add_argument("--model-cache", help="prepared-model cache directory")
    p.add_argument("--log-level", help="debug, info, warning, error (info)")
    p.add_argument("--log-format", choices=["auto", "json", "console"])
    p.add_argument("--password-file", help="file holding the broker password (username = id)")
    add_tls_flags(p)
    p.set_defaults(handler=_cmd_device)


def _cmd_device(args: argparse.Namespace) -> int:
    settings = DeviceSettings(**overrides(args, _DEVICE_FLAGS))
    configure_logging(settings.log_level, settings.log_format)
    from sciot_mqtt.device import Device
    from sciot_mqtt.device.emulation import Emulation
    from sciot_mqtt.device.inputs import FolderInputs, InputSource, SyntheticInputs
    from sciot_mqtt.device.report import summarize_inferences
    from sciot_mqtt.models.catalog import resolve_packages

    packages = resolve_packages(settings.models, settings.model_cache)
    inputs: InputSource
    if args.inputs:
        folder = FolderInputs(args.inputs)
        folder.check(list(packages.values()))
        inputs = folder
    else:
        inputs = SyntheticInputs(args.seed)
    summary: dict[str, object] = {}

    async def run(stop: asyncio.Event) -> None:
        emulation = Emulation.from_settings(settings)
        async with Device(settings, packages=packages, emulation=emulation) as device:
            watcher = asyncio.create_task(stop_when_ended(device, stop), name="device-watch")
            records = []
            if args.count is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.duration)
            else:
                with contextlib.suppress(TimeoutError):
                    await device.wait_until(lambda: device.mode == "offload", timeout=args.wait)
                for _ in range(args.count):
                    if stop.is_set():
                        break
                    data = inputs.next_for(device.model_package())
                    records.append(await device.infer(data, verify=True))
                    if args.interval:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), args.interval)
            watcher.cancel()
            await device.stop()
            if device.failure is not None:
                raise device.failure
            summary.update(device.summary().as_dict())
            summary["link"] = {d: st.as_dict() for d, st in device.link.stats.items()}
            if records:
                summary["inference"] = summarize_inferences(records)

    asyncio.run(until_signalled(run))
    print(json.dumps(summary), flush=True)
    return 0
