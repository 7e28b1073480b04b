"""`sciot-mqtt swarm`: run N simulated devices against the service and write a report."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import signal
import sys
from pathlib import Path

from sciot_mqtt._optional import require_extra
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import BrokerAddress


def add_swarm_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "swarm",
        help="run simulated devices against the service and report what happened",
        description="Starts a broker and the service (or uses --external ones), N simulated "
        "devices in worker processes, and writes a report: report.json, inferences.csv, PNG "
        "plots and summary.md.",
    )
    p.add_argument("--devices", type=int, default=20, help="number of devices (20)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (30)")
    p.add_argument(
        "--mix", type=Path, help="TOML or JSON: profiles, workload, churn (default: see README)"
    )
    p.add_argument("--report", type=Path, default=Path("swarm-report"), help="output folder")
    p.add_argument(
        "--network",
        choices=["emulate", "proxy", "netns"],
        default="emulate",
        help="emulate links in each device (default), through a TCP proxy per link, or shape "
        "them in the kernel (network namespaces + tc; root)",
    )
    p.add_argument(
        "--broker",
        choices=["mosquitto", "amqtt"],
        help="broker to start (Mosquitto when installed, else amqtt)",
    )
    p.add_argument(
        "--external", metavar="HOST:PORT", help="use a running broker and service instead"
    )
    p.add_argument("--instance", default=None, help="service instance name (edge)")
    p.add_argument(
        "--models",
        default="fomo96",
        help="comma-separated model ids the service serves and the devices carry (fomo96)",
    )
    p.add_argument("--model-cache", help="prepared-model cache directory ($SCIOT_MODEL_CACHE)")
    p.add_argument("--split", type=int, help="pin every device's split point")
    p.add_argument("--rate", type=float, help="inferences per second per device (mix: 1)")
    p.add_argument("--processes", type=int, help="worker processes (1 per 300 devices)")
    p.add_argument("--threads", type=int, default=2, help="model threads per worker (2)")
    p.add_argument("--service-workers", type=int, help="service threads running model tails")
    p.add_argument(
        "--verify-every", type=int, default=10, help="check every Nth result locally (10; 0 off)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of profiles, arrivals, churn")
    p.add_argument("--no-live", action="store_true", help="no live view, log lines instead")
    p.set_defaults(handler=_cmd_swarm)


def _broker(choice: str | None) -> str:
    if choice:
        return choice
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    return "mosquitto" if found else "amqtt"


def _address(text: str) -> BrokerAddress:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"--external wants HOST:PORT, got {text!r}")
    return BrokerAddress(host or "127.0.0.1", int(port))


def _cmd_swarm(args: argparse.Namespace) -> int:
    require_extra("swarm", "sciot-mqtt swarm")
    from sciot_mqtt.logs import configure_logging
    from sciot_mqtt.network import kernel_shaping_unavailable
    from sciot_mqtt.swarm.mix import load_mix
    from sciot_mqtt.swarm.run import SwarmOptions, run_swarm

    if args.network == "netns":
        reason = kernel_shaping_unavailable()
        if reason is not None:
            print(f"sciot-mqtt swarm: {reason}", file=sys.stderr)
            return 2
    configure_logging("info")
    mix = load_mix(args.mix)
    updates: dict[str, object] = {}
    if args.split is not None:
        updates["split"] = args.split
    if args.rate is not None:
        updates["workload"] = mix.workload.model_copy(update={"rate_hz": args.rate})
    mix = mix.model_copy(update=updates)
    service_args = []
    if args.service_workers:
        service_args += ["--workers", str(args.service_workers)]
    options = SwarmOptions(
        devices=args.devices,
        duration=args.duration,
        mix=mix,
        report=args.report,
        network=args.network,
        broker=_broker(args.broker),  # type: ignore[arg-type]
        external=_address(args.external) if args.external else None,
        instance=args.instance or "edge",
        processes=args.processes,
        threads=args.threads,
        service_args=service_args,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        model_cache=args.model_cache,
        verify_every=args.verify_every,
        seed=args.seed,
        live=not args.no_live and sys.stderr.isatty(),
        command=shlex.join(["sciot-mqtt", *sys.argv[1:]]),
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        result = await run_swarm(options, stop)
        inf = result.figures["inferences"]
        lat = result.figures["latency_ms"] or {}
        print(
            json.dumps(
                {
                    "report": str(args.report),
                    "started": inf["started"],
                    "answered": inf["answered"],
                    "local": inf["local"],
                    "fell_back": inf["fell_back"],
                    "failed": inf["failed"],
                    "lost": inf["lost"],
                    "p50_ms": lat.get("p50"),
                    "p99_ms": lat.get("p99"),
                    "rate_per_s": inf["rate_per_s"],
                }
            ),
            flush=True,
        )
        print(f"report: {args.report / 'summary.md'}", file=sys.stderr)
        return 0 if result.lost == 0 else 1

    return asyncio.run(main())
