"""`sciot-mqtt bench ...` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks: print and save JSON (and PNG plots)")
    kinds = bench.add_subparsers(dest="bench", required=True)
    split = kinds.add_parser("split", help="latency of every split point on loopback")
    split.add_argument("--model", default="fomo96", help="model id (fomo96)")
    split.add_argument("--iterations", type=int, default=200, help="per split point (200)")
    split.add_argument("--warmup", type=int, default=20, help="per split point (20)")
    split.add_argument(
        "--brokers", default="amqtt,mosquitto", help="comma-separated: amqtt, mosquitto"
    )
    split.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    split.set_defaults(handler=_cmd_split)

    decisions = kinds.add_parser("decisions", help="quality of the service's split choices")
    decisions.add_argument("--model", default="fomo96", help="model id (fomo96)")
    decisions.add_argument("--links", default="5g,wifi,lte,congested,lossy", help="link profiles")
    decisions.add_argument("--chips", default="esp32s3:0.05,host", help="compute profiles")
    decisions.add_argument("--repeats", type=int, default=8, help="inferences per fixed split")
    decisions.add_argument("--adaptive", type=int, default=80, help="inferences left to decide")
    decisions.add_argument("--steady", type=int, default=50, help="last ones scored")
    decisions.add_argument("--out", type=Path, default=Path("bench-results"))
    decisions.set_defaults(handler=_cmd_decisions)


def _cmd_split(args: argparse.Namespace) -> int:
    from sciot_mqtt.bench.split import BROKERS, run_split_bench
    from sciot_mqtt.logs import configure_logging

    configure_logging("warning")
    from sciot_mqtt.models.catalog import resolve_package

    brokers = tuple(b.strip() for b in args.brokers.split(",") if b.strip())
    unknown = set(brokers) - set(BROKERS)
    if unknown:
        raise SystemExit(f"sciot-mqtt: unknown broker(s) {sorted(unknown)}; use {BROKERS}")
    package = resolve_package(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_split_bench(
            package, args.out, brokers=brokers, iterations=args.iterations, warmup=args.warmup
        )
    )
    summary = {
        broker: [
            {
                "split": r["split"],
                "bytes": r["tensor_bytes"],
                "p50_ms": round(r["latency_ms"]["p50"], 2),
                "p99_ms": round(r["latency_ms"]["p99"], 2),
                "overhead_p50_ms": round(r["service_overhead_ms"]["p50"], 3),
            }
            for r in rows
            if "latency_ms" in r
        ]
        for broker, rows in report["brokers"].items()
    }
    print(json.dumps({"machine": report["machine"], "results": summary}, indent=1))
    print(f"saved {args.out / 'split.json'} and {args.out / 'split.png'}")
    return 0


def _cmd_decisions(args: argparse.Namespace) -> int:
    from sciot_mqtt.bench.decisions import run_decisions_bench
    from sciot_mqtt.logs import configure_logging
    from sciot_mqtt.models.catalog import resolve_package

    configure_logging("warning")
    package = resolve_package(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(
        run_decisions_bench(
            package,
            args.out,
            links=tuple(x for x in args.links.split(",") if x),
            chips=tuple(x for x in args.chips.split(",") if x),
            repeats=args.repeats,
            adaptive=args.adaptive,
            steady=args.steady,
        )
    )
    print(f"saved {args.out / 'decisions.json'} and {args.out / 'decisions.png'}")
    return 0
