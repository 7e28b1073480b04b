"""`sciot-mqtt bench ...` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from sciot_mqtt._optional import require_extra


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmarks: print and save JSON (and PNG plots)",
        description="Benchmarks of the service on this machine. Each prints its figures as "
        "JSON and saves them, with PNG plots, in --out.",
    )
    kinds = bench.add_subparsers(dest="bench", required=True)
    split = kinds.add_parser(
        "split",
        help="latency of every split point on loopback",
        description="Start the broker(s) and `sciot-mqtt up` in its own process, then run "
        "--iterations inferences at every split point 0..N from a device in this process "
        "over loopback: the round trip (infer to result), the edge's tail compute, the "
        "service's own overhead and the device's head compute, per split point and broker.",
    )
    split.add_argument(
        "--model", default="fomo96", help="zoo or prepared model id (fomo96; models split)"
    )
    split.add_argument("--model-cache", help="prepared-model cache ($SCIOT_MODEL_CACHE)")
    split.add_argument("--iterations", type=int, default=200, help="per split point (200)")
    split.add_argument("--warmup", type=int, default=20, help="per split point (20)")
    split.add_argument(
        "--brokers", default="amqtt,mosquitto", help="comma-separated: amqtt, mosquitto"
    )
    split.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    split.set_defaults(handler=_cmd_split)

    decisions = kinds.add_parser(
        "decisions",
        help="quality of the service's split choices",
        description="For every pairing of emulated chip (--chips) and link (--links): "
        "measure every fixed split point, then let the service decide for --adaptive "
        "inferences, and score its last --steady ones against the best fixed split.",
    )
    decisions.add_argument(
        "--model", default="fomo96", help="zoo or prepared model id (fomo96; models split)"
    )
    decisions.add_argument("--model-cache", help="prepared-model cache ($SCIOT_MODEL_CACHE)")
    decisions.add_argument("--links", default="5g,wifi,lte,congested,lossy", help="link profiles")
    decisions.add_argument("--chips", default="esp32s3:0.05,host", help="compute profiles")
    decisions.add_argument("--repeats", type=int, default=8, help="inferences per fixed split")
    decisions.add_argument("--adaptive", type=int, default=80, help="inferences left to decide")
    decisions.add_argument("--steady", type=int, default=50, help="last ones scored")
    decisions.add_argument(
        "--interval", type=float, default=0.0, help="idle seconds between inferences (0)"
    )
    decisions.add_argument("--out", type=Path, default=Path("bench-results"))
    decisions.set_defaults(handler=_cmd_decisions)

    scale = kinds.add_parser(
        "scale",
        help="sustained rate of one service, and the knee",
        description="Run --devices simulated devices against one service at each per-device "
        "rate of --rates in turn, and report the sustained inferences/s and latency of each "
        "step: where latency bends up is the knee.",
    )
    scale.add_argument("--devices", type=int, default=1000, help="host-profile devices (1000)")
    scale.add_argument(
        "--rates", default="0.1,0.25,0.5,0.75,1,1.5", help="per-device inferences/s, in order"
    )
    scale.add_argument("--duration", type=float, default=60, help="scored seconds per step")
    scale.add_argument("--warmup", type=float, default=10, help="unscored seconds per step")
    scale.add_argument("--join-over", type=float, default=20, help="join ramp per step (s)")
    scale.add_argument("--split", type=int, default=12, help="split every device uses (12)")
    scale.add_argument("--processes", type=int, help="swarm worker processes (auto)")
    scale.add_argument("--out", type=Path, default=Path("bench-results"))
    scale.set_defaults(handler=_cmd_scale)

    soak = kinds.add_parser(
        "soak",
        help="long run with churn: memory, descriptors, losses",
        description="Run --devices devices for --duration seconds with devices leaving, "
        "crashing and rejoining (--churn), and report the service's memory and file "
        "descriptors over time and every inference lost.",
    )
    soak.add_argument("--devices", type=int, default=100, help="devices (100)")
    soak.add_argument("--duration", type=float, default=600, help="seconds (600)")
    soak.add_argument("--rate", type=float, default=1.0, help="inferences/s per device (1)")
    soak.add_argument(
        "--churn", type=float, default=0.2, help="share of devices leaving or crashing per min"
    )
    soak.add_argument("--out", type=Path, default=Path("bench-results"))
    soak.set_defaults(handler=_cmd_soak)

    tp = kinds.add_parser(
        "throughput",
        help="inferences/s of one service process under light devices",
        description="Start the broker and `sciot-mqtt up --split S` in its own process, then "
        "drive it from light devices in processes of their own (the contract's handshake, "
        "then precomputed infer requests, a window of outstanding requests each) at every "
        "--steps devices x window, for every split point in --splits: answered/s, latency "
        "p50/p99, CPU per inference of service, broker and devices, and the tail timed alone "
        "(also per item in a batch, and with XNNPACK). With --max-batch 1,8 each split point "
        "runs once per service max_batch. Every request is counted; exit 1 if any is lost.",
    )
    tp.add_argument("--model", default="fomo96", help="model id (fomo96)")
    tp.add_argument("--splits", default="0,6,12,20", help="split points (0,6,12,20)")
    tp.add_argument(
        "--steps",
        default="1x1,4x1,8x1,16x1,32x1,32x2,32x4",
        help="offered load per step, DEVICESxWINDOW (1x1,4x1,8x1,16x1,32x1,32x2,32x4)",
    )
    tp.add_argument("--brokers", default="mosquitto", help="comma-separated: mosquitto, amqtt")
    tp.add_argument("--workers", type=int, default=2, help="the service's tail threads (2)")
    tp.add_argument(
        "--max-batch",
        default="",
        help="comma-separated: the service's --max-batch, a series each (default: its own)",
    )
    tp.add_argument("--processes", type=int, default=2, help="light-device processes (2)")
    tp.add_argument("--warmup", type=float, default=2.0, help="unscored seconds per step (2)")
    tp.add_argument("--duration", type=float, default=8.0, help="scored seconds per step (8)")
    tp.add_argument("--out", type=Path, default=Path("bench-results"))
    tp.set_defaults(handler=_cmd_throughput)

    fleet = kinds.add_parser(
        "fleet",
        help="answered/s and CPU with 1, 2, ... instances; a kill -9 failover timeline",
        description="With Mosquitto and --instances N service instances (`sciot-mqtt up "
        "--external-broker --instance fleet-{i}` processes, one split point) for each N in "
        "turn, load them from light devices in processes of their own (as `bench "
        "throughput`, each device sending to the instance its assign names): answered/s, "
        "latency p50/p99, CPU per inference of all instances summed, Mosquitto and the "
        "devices. Then the failover: --failover-devices devices stream to "
        "--failover-instances instances, the one serving the most is killed with SIGKILL, "
        "and each device's mode and serving instance over time is recorded and plotted. "
        "Every request is counted; exit 1 if any is lost.",
    )
    fleet.add_argument("--model", default="fomo96", help="model id (fomo96)")
    fleet.add_argument("--model-cache", help="prepared-model cache ($SCIOT_MODEL_CACHE)")
    fleet.add_argument("--split", type=int, default=12, help="split point (12)")
    fleet.add_argument("--instances", default="1,2,3", help="instance counts, in turn (1,2,3)")
    fleet.add_argument("--step", default="24x1", help="offered load, DEVICESxWINDOW (24x1)")
    fleet.add_argument("--workers", type=int, default=2, help="tail threads per instance (2)")
    fleet.add_argument("--processes", type=int, default=2, help="light-device processes (2)")
    fleet.add_argument("--warmup", type=float, default=2.0, help="unscored seconds (2)")
    fleet.add_argument("--duration", type=float, default=8.0, help="scored seconds (8)")
    fleet.add_argument(
        "--failover-instances", type=int, default=3, help="instances in the failover (3; 0: skip)"
    )
    fleet.add_argument("--failover-devices", type=int, default=12, help="devices (12)")
    fleet.add_argument(
        "--failover-before", type=float, default=3.0, help="seconds streaming before the kill (3)"
    )
    fleet.add_argument(
        "--failover-after", type=float, default=7.0, help="seconds streaming after it (7)"
    )
    fleet.add_argument("--out", type=Path, default=Path("bench-results"))
    fleet.set_defaults(handler=_cmd_fleet)


def _cmd_split(args: argparse.Namespace) -> int:
    require_extra("bench", "bench split")
    from sciot_mqtt.bench.split import BROKERS, run_split_bench
    from sciot_mqtt.logs import configure_logging

    configure_logging("warning")
    from sciot_mqtt.models.catalog import resolve_package

    names = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(names) - set(BROKERS)
    if unknown:
        raise SystemExit(f"sciot-mqtt: unknown broker(s) {sorted(unknown)}; use {BROKERS}")
    brokers = tuple(b for b in BROKERS if b in names)
    package = resolve_package(args.model, args.model_cache)
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_split_bench(
            package,
            args.out,
            brokers=brokers,
            iterations=args.iterations,
            warmup=args.warmup,
            model_cache=args.model_cache,
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
    require_extra("bench", "bench decisions")
    from sciot_mqtt.bench.decisions import run_decisions_bench
    from sciot_mqtt.logs import configure_logging
    from sciot_mqtt.models.catalog import resolve_package

    configure_logging("warning")
    package = resolve_package(args.model, args.model_cache)
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
            interval=args.interval,
        )
    )
    print(f"saved {args.out / 'decisions.json'} and {args.out / 'decisions.png'}")
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    require_extra("bench", "bench scale")
    from sciot_mqtt.bench.scale import run_scale_bench
    from sciot_mqtt.logs import configure_logging

    configure_logging("warning")
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_scale_bench(
            args.out,
            devices=args.devices,
            rates=[float(x) for x in args.rates.split(",") if x],
            duration=args.duration,
            warmup=args.warmup,
            split=args.split,
            join_over=args.join_over,
            processes=args.processes,
        )
    )
    print(json.dumps({"knee": report["knee"], "baseline_p99_ms": report["baseline_p99_ms"]}))
    print(f"saved {args.out / 'scale.json'} and {args.out / 'scale.png'}")
    return 0


def _cmd_soak(args: argparse.Namespace) -> int:
    require_extra("bench", "bench soak")
    from sciot_mqtt.bench.soak import run_soak_bench
    from sciot_mqtt.logs import configure_logging

    configure_logging("warning")
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_soak_bench(
            args.out,
            devices=args.devices,
            duration=args.duration,
            rate=args.rate,
            churn_per_min=args.churn,
        )
    )
    summary = {k: report[k] for k in ("lost", "churn", "service_rss_mb", "service_fds")}
    print(json.dumps(summary, indent=1))
    print(f"saved {args.out / 'soak.json'} and {args.out / 'soak.png'}")
    return 0 if report["lost"] == 0 else 1


def _cmd_throughput(args: argparse.Namespace) -> int:
    require_extra("bench", "bench throughput")
    import sys

    from sciot_mqtt.bench.split import BROKERS
    from sciot_mqtt.bench.throughput import parse_steps, run_throughput_bench
    from sciot_mqtt.logs import configure_logging
    from sciot_mqtt.models.catalog import resolve_package

    configure_logging("warning")
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(brokers) - set(BROKERS)
    if unknown:
        raise SystemExit(f"sciot-mqtt: unknown broker(s) {sorted(unknown)}; use {BROKERS}")
    try:
        max_batches = [int(b) for b in args.max_batch.split(",") if b.strip()]
    except ValueError:
        raise SystemExit(
            f"sciot-mqtt: --max-batch wants numbers, e.g. 1,4,8: {args.max_batch!r}"
        ) from None
    if any(b < 1 for b in max_batches):
        raise SystemExit("sciot-mqtt: every --max-batch must be at least 1")
    package = resolve_package(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_throughput_bench(
            package,
            args.out,
            splits=[int(s) for s in args.splits.split(",") if s],
            steps=parse_steps(args.steps),
            brokers=brokers,
            workers=args.workers,
            processes=args.processes,
            warmup=args.warmup,
            duration=args.duration,
            command="sciot-mqtt bench throughput " + " ".join(sys.argv[3:]),
            max_batches=max_batches,
        )
    )
    summary = {
        f"{s['broker']} split {s['split']} max_batch {s['max_batch'] or 'default'}": s["summary"]
        for s in report["series"]
    }
    print(json.dumps({"lost": report["lost"], "summary": summary}, indent=1))
    print(f"saved {args.out / 'throughput.json'} and {args.out / 'throughput.png'}")
    return 0 if report["lost"] == 0 else 1


def _cmd_fleet(args: argparse.Namespace) -> int:
    require_extra("bench", "bench fleet")
    import sys

    from sciot_mqtt.bench.fleet import FailoverPlan, run_fleet_bench
    from sciot_mqtt.bench.throughput import parse_steps
    from sciot_mqtt.logs import configure_logging
    from sciot_mqtt.models.catalog import resolve_package

    configure_logging("warning")
    steps = parse_steps(args.step)
    if len(steps) != 1:
        raise SystemExit("sciot-mqtt: --step takes one DEVICESxWINDOW")
    try:
        counts = [int(n) for n in args.instances.split(",") if n.strip()]
    except ValueError:
        raise SystemExit(f"sciot-mqtt: bad --instances {args.instances!r}") from None
    failover = None
    if args.failover_instances:
        failover = FailoverPlan(
            args.failover_instances,
            args.failover_devices,
            args.failover_before,
            args.failover_after,
        )
    package = resolve_package(args.model, args.model_cache)
    args.out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_fleet_bench(
            package,
            args.out,
            counts=counts,
            step=steps[0],
            split=args.split,
            workers=args.workers,
            processes=args.processes,
            warmup=args.warmup,
            duration=args.duration,
            failover=failover,
            model_cache=args.model_cache,
            command="sciot-mqtt bench fleet " + " ".join(sys.argv[3:]),
        )
    )
    summary: dict[str, object] = {
        "lost": report["lost"],
        "scaling": {
            p["instances"]: {
                "answered_per_s": p["answered_per_s"],
                "latency_ms": p.get("latency_ms"),
                "service_cpu_ms_per_inference": p["cpu_ms_per_inference"].get("service"),
            }
            for p in report["scaling"]
        },
    }
    if "failover" in report:
        result = report["failover"]
        summary["failover"] = {
            k: result[k] for k in ("victim", "devices_on_victim", "will_after_kill_s", "requests")
        } | {"reassigned_after_will_s": result["reassigned_after_will_s"]}
    print(json.dumps(summary, indent=1))
    saved = [args.out / "fleet.json", args.out / "fleet.png"]
    if failover is not None:
        saved.append(args.out / "fleet-failover.png")
    print("saved " + ", ".join(str(p) for p in saved))
    return 0 if report["lost"] == 0 else 1
