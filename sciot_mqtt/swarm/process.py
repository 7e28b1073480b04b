"""One swarm worker process: `python -m sciot_mqtt.swarm.process SPEC.json`.

The swarm command starts one per share of the devices (inside a network namespace when the
link is shaped by the kernel). Once its models are loaded it prints `{"ready": true}` and
waits for `go T0` on stdin (the swarm's start, on the wall clock: every worker's rows count
from it). It prints a JSON snapshot line every second on stdout, stops on
SIGTERM or SIGINT (letting in-flight inferences finish), writes its rows to the CSV the spec
names, and prints a last line `{"final": {...}}`.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sciot_mqtt.logs import configure_logging
from sciot_mqtt.swarm.mix import DevicePlan, Mix
from sciot_mqtt.swarm.worker import ROW_FIELDS, Row, SwarmWorker
from sciot_mqtt.transport import BrokerAddress

__all__ = ["WorkerSpec", "write_rows"]


class WorkerSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    plans: list[DevicePlan]
    mix: Mix
    brokers: dict[str, tuple[str, int]]
    emulate_links: bool
    threads: int = 2
    verify_every: int = 10
    seed: int = 0
    models: list[str]
    model_cache: str | None = None
    rows: str
    log_level: str = "warning"


def write_rows(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _run(spec: WorkerSpec) -> dict[str, Any]:
    from sciot_mqtt.models.catalog import resolve_packages

    packages = resolve_packages(spec.models, spec.model_cache)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Ready: the swarm starts its clock when every worker is, and says when in "go T0".
    _emit({"ready": True})
    go = await loop.run_in_executor(None, sys.stdin.readline)
    if not go.startswith("go "):
        return {"started": 0, "recorded": 0, "lost": 0, "rows": None}
    started_at = float(go.split()[1])
    worker = SwarmWorker(
        spec.plans,
        spec.mix,
        packages,
        {link: BrokerAddress(host, port) for link, (host, port) in spec.brokers.items()},
        emulate_links=spec.emulate_links,
        started_at=started_at,
        threads=spec.threads,
        verify_every=spec.verify_every,
        seed=spec.seed,
        device_log_level=spec.log_level,
    )
    async with worker:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                _emit(worker.snapshot())
    _emit(worker.snapshot())
    write_rows(Path(spec.rows), worker.rows)
    return {
        "started": worker.started,
        "recorded": len(worker.rows),
        "lost": worker.lost,
        "joins": worker.joins,
        "leaves": worker.leaves,
        "crashes": worker.crashes,
        "rows": spec.rows,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sciot_mqtt.swarm.process SPEC.json", file=sys.stderr)
        return 2
    spec = WorkerSpec.model_validate_json(Path(args[0]).read_bytes())
    configure_logging(spec.log_level, "json")
    final = asyncio.run(_run(spec))
    _emit({"final": final})
    return 0


if __name__ == "__main__":
    sys.exit(main())
