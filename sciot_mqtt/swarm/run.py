"""`sciot-mqtt swarm`: the edge, the links, worker processes of devices, samples, the report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from sciot_mqtt._tasks import finish
from sciot_mqtt.device.compute import load_compute_profile
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.machine import describe_machine
from sciot_mqtt.network.link import load_link_profile
from sciot_mqtt.swarm.edge import Edge, edge_stack, model_flags, wait_for_service
from sciot_mqtt.swarm.live import LiveView, SwarmTotals
from sciot_mqtt.swarm.mix import DevicePlan, Mix, plan_devices
from sciot_mqtt.swarm.process import WorkerSpec
from sciot_mqtt.swarm.report import build_figures, read_rows, write_report
from sciot_mqtt.swarm.sampler import Sampler
from sciot_mqtt.transport import BrokerAddress

__all__ = ["NetworkMode", "SwarmOptions", "SwarmResult", "run_swarm"]

_log = structlog.get_logger("sciot.swarm")

NetworkMode = Literal["emulate", "proxy", "netns"]
#: Devices per worker process when not told: one process keeps up with about this many.
DEVICES_PER_PROCESS = 300


@dataclass
class SwarmOptions:
    devices: int
    duration: float
    mix: Mix = field(default_factory=lambda: Mix.model_validate({}))
    report: Path | None = None
    network: NetworkMode = "emulate"
    broker: Literal["mosquitto", "amqtt"] = "mosquitto"
    external: BrokerAddress | None = None  # a running broker + service: connect only
    instance: str = "edge"
    processes: int | None = None
    threads: int = 2
    service_args: Sequence[str] = ()
    models: Sequence[str] = ("fomo96",)
    model_cache: str | None = None
    verify_every: int = 10
    seed: int = 0
    live: bool = False
    command: str = ""


@dataclass
class SwarmResult:
    figures: dict[str, Any]
    report_files: list[Path]
    lost: int


def _raise_fd_limit() -> None:
    """A thousand devices need a few thousand sockets between them, broker and proxies."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _validate(options: SwarmOptions) -> None:
    from sciot_mqtt.models.catalog import resolve_packages

    if options.devices < 1:
        raise ConfigurationError("--devices must be at least 1")
    if options.duration <= 0:
        raise ConfigurationError("--duration must be positive")
    packages = resolve_packages(options.models, options.model_cache)
    for link in options.mix.links:
        load_link_profile(link)
    for compute in options.mix.compute:
        for package in packages.values():
            load_compute_profile(compute, package)


@dataclass
class _Worker:
    index: int
    plans: list[DevicePlan]
    prefix: list[str]
    brokers: dict[str, BrokerAddress]
    process: asyncio.subprocess.Process | None = None
    final: dict[str, Any] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


def _groups(plans: list[DevicePlan], processes: int) -> list[list[DevicePlan]]:
    groups: list[list[DevicePlan]] = [[] for _ in range(processes)]
    for i, plan in enumerate(plans):
        groups[i % processes].append(plan)
    return [g for g in groups if g]


async def run_swarm(options: SwarmOptions, stop: asyncio.Event | None = None) -> SwarmResult:
    """Run the swarm for `options.duration` (or until `stop`), write the report."""
    _validate(options)
    _raise_fd_limit()
    stop = stop or asyncio.Event()
    report_dir = options.report or Path(tempfile.mkdtemp(prefix="sciot-swarm-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    parts = report_dir / "parts"
    parts.mkdir(exist_ok=True)
    mix = options.mix
    plans = plan_devices(mix, options.devices, seed=options.seed)
    processes = options.processes or max(1, math.ceil(options.devices / DEVICES_PER_PROCESS))
    totals = SwarmTotals(options.devices, options.duration)
    network_description = {
        "emulate": "links emulated inside each device",
        "proxy": "links emulated by a TCP proxy per link profile",
        "netns": "kernel-shaped links",
    }[options.network]

    async with contextlib.AsyncExitStack() as stack:
        if options.external is not None:
            await wait_for_service(options.external, options.instance, 30)
            edge = Edge(
                options.external, f"the broker at {options.external}", None, options.instance
            )
            service = f"the service instance {options.instance!r} already running"
        else:
            edge = await stack.enter_async_context(
                edge_stack(
                    options.broker,
                    report_dir,
                    instance=options.instance,
                    service_args=[
                        "--stats-interval",
                        "1",
                        *model_flags(options.models, options.model_cache),
                        *options.service_args,
                    ],
                    mosquitto_config="sys_interval 1\n",
                )
            )
            service = "`sciot-mqtt up` in its own process"
        workers, shaping = await _links(stack, options, plans, processes, edge.address)
        if shaping:
            network_description += f" ({shaping})"
        sampler = Sampler(edge, totals)

        def on_start(t0: float) -> None:
            sampler.t0 = t0
            sampler.worker_pids = [w.process.pid for w in workers if w.process is not None]
            sampling = asyncio.create_task(sampler.run(), name="swarm-sampler")
            stack.push_async_callback(finish, sampling, 2)

        view = LiveView(totals) if options.live else None
        with view or contextlib.nullcontext():
            t0 = await _run_workers(workers, options, parts, totals, stop, view, on_start)
        duration = time.time() - t0

    finals = [w.final or {} for w in workers]
    rows = read_rows([Path(f["rows"]) for f in finals if f.get("rows")])
    started = sum(int(f.get("started", 0)) for f in finals)
    churn = {k: sum(int(f.get(k, 0)) for f in finals) for k in ("joins", "leaves", "crashes")}
    figures = build_figures(
        rows, started=started, duration_s=duration, samples=sampler.samples, churn=churn
    )
    crashed_workers = [w.index for w in workers if w.final is None]
    if crashed_workers:
        figures["inferences"]["workers_without_final_report"] = crashed_workers
    meta = {
        "benchmark": "swarm",
        "command": options.command,
        "machine": {**describe_machine(), "summary": _machine_line()},
        "broker": edge.broker,
        "service": service,
        "config": {
            "devices": options.devices,
            "duration_s": round(duration, 2),
            "network": options.network,
            "network_description": network_description,
            "processes": len(workers),
            "threads_per_process": options.threads,
            "mix": mix.describe(),
            "models": list(options.models),
            "verify_every": options.verify_every,
            "seed": options.seed,
        },
    }
    files = write_report(report_dir, rows, figures, meta, sampler.samples)
    for part in parts.iterdir():
        part.unlink()
    parts.rmdir()
    return SwarmResult(figures, files, figures["inferences"]["lost"])


def _machine_line() -> str:
    m = describe_machine()
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}"


async def _links(
    stack: contextlib.AsyncExitStack,
    options: SwarmOptions,
    plans: list[DevicePlan],
    processes: int,
    broker: BrokerAddress,
) -> tuple[list[_Worker], str]:
    """Per network mode: where each link's devices connect, and how workers are split."""
    from sciot_mqtt.network import LinkProxy, NetnsLink

    links = sorted({p.link for p in plans})
    if options.network == "emulate":
        brokers = {link: broker for link in links}
        return [
            _Worker(i, group, [], brokers) for i, group in enumerate(_groups(plans, processes))
        ], ""
    if options.network == "proxy":
        brokers = {}
        for n, link in enumerate(links):
            proxy = await stack.enter_async_context(
                LinkProxy(link, broker, seed=options.seed * 1000 + n)
            )
            brokers[link] = proxy.address
        return [
            _Worker(i, group, [], brokers) for i, group in enumerate(_groups(plans, processes))
        ], ""
    # netns: each link's devices in their own namespace, so their workers are split per link
    workers: list[_Worker] = []
    shapings = set()
    per_link = max(1, processes // len(links))
    for n, link in enumerate(links):
        shaped = await stack.enter_async_context(NetnsLink(load_link_profile(link), n))
        shapings.add(shaped.shaping.describe())
        proxy = await stack.enter_async_context(
            LinkProxy(
                shaped.proxy_profile(),
                broker,
                listen_host=shaped.host_address,
                seed=options.seed * 1000 + n,
            )
        )
        mine = [p for p in plans if p.link == link]
        for group in _groups(mine, per_link):
            workers.append(_Worker(len(workers), group, shaped.exec_prefix, {link: proxy.address}))
    return workers, "; ".join(sorted(shapings))


async def _run_workers(
    workers: list[_Worker],
    options: SwarmOptions,
    parts: Path,
    totals: SwarmTotals,
    stop: asyncio.Event,
    view: LiveView | None,
    on_start: Callable[[float], None],
) -> float:
    """Start the workers, and once all are ready (models loaded), the clock; run them for
    the duration; stop them and wait for their rows. Returns the start time."""

    async def read(worker: _Worker) -> None:
        assert worker.process is not None and worker.process.stdout is not None
        async for raw in worker.process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                line = json.loads(raw)
                if "final" in line:
                    worker.final = line["final"]
                elif "ready" in line:
                    worker.ready.set()
                else:
                    totals.add(worker.index, line)

    readers = []
    for worker in workers:
        spec = WorkerSpec(
            plans=worker.plans,
            mix=options.mix,
            brokers={k: (v.host, v.port) for k, v in worker.brokers.items()},
            emulate_links=options.network == "emulate",
            threads=options.threads,
            verify_every=options.verify_every,
            seed=options.seed * 7919 + worker.index,
            models=list(options.models),
            model_cache=options.model_cache,
            rows=str((parts / f"worker-{worker.index}.csv").resolve()),
        )
        spec_file = parts / f"worker-{worker.index}.json"
        spec_file.write_text(spec.model_dump_json())
        log = (parts.parent / f"worker-{worker.index}.log").open("wb")
        argv = [
            *worker.prefix,
            sys.executable,
            "-m",
            "sciot_mqtt.swarm.process",
            str(spec_file.resolve()),
        ]
        _log.debug("starting worker", argv=shlex.join(argv))
        worker.process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log
        )
        log.close()
        readers.append(asyncio.create_task(read(worker), name=f"swarm-worker-{worker.index}"))

    last_line = time.monotonic()
    ending = asyncio.ensure_future(stop.wait())
    try:
        await _all_ready(workers, readers, parts.parent)
        t0 = time.time()
        for worker in workers:
            assert worker.process is not None and worker.process.stdin is not None
            worker.process.stdin.write(f"go {t0!r}\n".encode())
            await worker.process.stdin.drain()
        on_start(t0)
        deadline = t0 + options.duration
        while time.time() < deadline and not stop.is_set():
            if all(r.done() for r in readers):
                break  # every worker died: nothing left to wait for
            await asyncio.wait([ending], timeout=min(0.25, max(deadline - time.time(), 0)))
            if view is not None:
                view.update()
            elif time.monotonic() - last_line >= 5:
                _log.info("swarm", status=totals.line())
                last_line = time.monotonic()
    finally:
        ending.cancel()
        for worker in workers:
            if worker.process is not None and worker.process.returncode is None:
                assert worker.process.stdin is not None
                worker.process.stdin.close()  # a worker still waiting for "go" gives up
                worker.process.send_signal(signal.SIGTERM)
        drain = options.mix.result_timeout + 30
        _, pending = await asyncio.wait(readers, timeout=drain)
        for worker in workers:
            process = worker.process
            if process is not None and process.returncode is None:
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        for task in pending:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return t0


async def _all_ready(
    workers: list[_Worker], readers: list[asyncio.Task[None]], logs: Path, timeout: float = 300
) -> None:
    """Until every worker has loaded its models; a worker that dies first is an error."""
    ready = [asyncio.ensure_future(w.ready.wait()) for w in workers]
    try:
        async with asyncio.timeout(timeout):
            while not all(r.done() for r in ready):
                await asyncio.wait([*ready, *readers], return_when=asyncio.FIRST_COMPLETED)
                dead = [w for w, r in zip(workers, readers, strict=True) if r.done()]
                if dead:
                    raise ConfigurationError(
                        f"swarm worker {dead[0].index} exited before it was ready; "
                        f"see {logs / f'worker-{dead[0].index}.log'}"
                    )
    finally:
        for r in ready:
            r.cancel()
