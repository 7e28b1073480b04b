"""`sciot-mqtt up --processes N`: N service instances as processes, one per core, beside the
embedded broker (run in this process) or against `--external-broker`.

Each child is a plain `sciot-mqtt up --external-broker --instance {instance}-{i}`; they form
a fleet by themselves on the broker (topics.md, "Fleet"). This process only starts them,
stops them (SIGTERM: each hands its devices over and goes offline) and ends when one ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import structlog

from sciot_mqtt.transport import BrokerAddress

# Flags passed through to every instance unchanged (the rest: broker, name, logins).
PASSED_FLAGS = (
    "heartbeat_interval",
    "stats_interval",
    "models",
    "max_payload",
    "split",
    "workers",
    "max_batch",
    "placement",
    "capacity",
    "tier",
    "tier_high",
    "tier_low",
    "handover_timeout",
    "model_cache",
    "log_level",
    "log_format",
)


def instance_names(instance: str, processes: int) -> list[str]:
    return [f"{instance}-{i}" for i in range(1, processes + 1)]


def child_argv(address: BrokerAddress, name: str, passed: dict[str, object]) -> list[str]:
    argv = [sys.executable, "-m", "sciot_mqtt", "up", "--external-broker"]
    argv += ["--host", address.host, "--port", str(address.port), "--instance", name]
    for flag, value in passed.items():
        text = ",".join(value) if isinstance(value, list | tuple) else str(value)
        argv += [f"--{flag.replace('_', '-')}", text]
    return argv


async def run_instances(
    address: BrokerAddress,
    names: Sequence[str],
    passed: dict[str, object],
    stop: asyncio.Event,
    grace: float,
) -> int:
    """Run one child per name until `stop` or until one ends; its exit status (0 on stop)."""
    log = structlog.get_logger("sciot.processes")
    children: list[asyncio.subprocess.Process] = []
    waits: list[asyncio.Task[object]] = []
    try:
        for name in names:
            child = await asyncio.create_subprocess_exec(*child_argv(address, name, passed))
            children.append(child)
            log.info("instance started", instance=name, pid=child.pid)
        waits.append(asyncio.create_task(stop.wait(), name="processes-stop"))
        for child, name in zip(children, names, strict=True):
            waits.append(asyncio.create_task(child.wait(), name=f"processes-{name}"))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        ended = [c for c in children if c.returncode is not None]
        if ended:
            log.error("an instance ended", pid=ended[0].pid, returncode=ended[0].returncode)
        return 0 if not ended else ended[0].returncode or 1
    finally:
        for task in waits:
            task.cancel()
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
