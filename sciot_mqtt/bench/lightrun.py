"""The benchmark's side of light devices (`light.py`): their processes started, ready, told
when to send, and their records collected; and the CPU time of the processes under test.

`bench throughput` and `bench fleet` both drive their load through `light_processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from sciot_mqtt.bench.light import LightSpec
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import BrokerAddress

__all__ = ["CpuClock", "LightProcesses", "light_processes"]


class CpuClock:
    """CPU seconds (user + system) of groups of processes, read at two instants."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        import psutil

        self._processes: dict[str, list[Any]] = {}
        for name, group in pids.items():
            handles = []
            for pid in group:
                with contextlib.suppress(psutil.Error):
                    handles.append(psutil.Process(pid))
            self._processes[name] = handles

    def read(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, handles in self._processes.items():
            total = 0.0
            for process in handles:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            out[name] = total
        return out


@dataclass
class LightProcesses:
    """Light-device processes that have connected their devices (each one assigned)."""

    children: list[tuple[asyncio.subprocess.Process, Path, Path]]
    answer_timeout: float
    rows: list[list[Any]] = field(default_factory=list)
    timelines: dict[str, list[list[Any]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [child.pid for child, _, _ in self.children]

    async def go(self, start: float, stop: float) -> None:
        """Every device sends from `start` until `stop` (wall clock)."""
        for child, _, _ in self.children:
            assert child.stdin is not None
            child.stdin.write(f"go {start} {stop}\n".encode())
            await child.stdin.drain()

    async def collect(self) -> None:
        """Wait for every process to finish (answers still due included) and read what each
        request became (`light.py`'s rows) and each device's timeline."""
        for child, records, timelines in self.children:
            final = await _line(child, self.answer_timeout + 30)
            await child.wait()
            if "final" not in final:
                raise ConfigurationError(f"a light-device process said {final}")
            self.failures.extend(final["final"]["device_failures"])
            self.rows.extend(json.loads(records.read_text()))
            self.timelines.update(json.loads(timelines.read_text()))


async def _line(child: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert child.stdout is not None
    raw = await asyncio.wait_for(child.stdout.readline(), timeout)
    if not raw:
        raise ConfigurationError(f"a light-device process exited ({await child.wait()})")
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


@contextlib.asynccontextmanager
async def light_processes(
    address: BrokerAddress,
    device_ids: Sequence[str],
    *,
    window: int,
    model: str,
    templates: list[dict[str, Any]],
    processes: int,
    workdir: Path,
    answer_timeout: float,
    ready_timeout: float = 60.0,
) -> AsyncIterator[LightProcesses]:
    """Start `processes` light-device processes sharing `device_ids` (round robin); yield
    once every device has its assignment; kill any process still running on the way out."""
    payloads = workdir / "payloads.msgpack"
    payloads.write_bytes(msgpack.packb(templates))
    count = min(processes, len(device_ids))
    children = []
    try:
        for p in range(count):
            records, timelines = workdir / f"records-{p}.json", workdir / f"timelines-{p}.json"
            spec = LightSpec(
                host=address.host,
                port=address.port,
                device_ids=list(device_ids[p::count]),
                window=window,
                model=model,
                payloads=str(payloads),
                records=str(records),
                timelines=str(timelines),
                answer_timeout=answer_timeout,
            )
            spec_path = workdir / f"light-{p}.json"
            spec_path.write_text(spec.model_dump_json())
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sciot_mqtt.bench.light",
                str(spec_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={k: v for k, v in os.environ.items() if not k.startswith("SCIOT_")},
            )
            children.append((child, records, timelines))
        for child, _, _ in children:
            ready = await _line(child, ready_timeout)
            if not ready.get("ready"):
                raise ConfigurationError(f"a light-device process said {ready}")
        yield LightProcesses(children, answer_timeout)
    finally:
        for child, _, _ in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
