"""The edge under test: a broker and `sciot-mqtt up` as a child process, so that the service's
CPU and memory can be measured apart from the devices that load it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sciot_mqtt.broker import MosquittoBroker, free_port, until_accepting
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.testing.probe import MqttProbe
from sciot_mqtt.transport import BrokerAddress

__all__ = ["Edge", "edge_stack", "fleet_stack", "model_flags", "service_process"]

BrokerKind = Literal["mosquitto", "amqtt"]


@dataclass(frozen=True)
class Edge:
    address: BrokerAddress
    broker: str  # what the report calls it
    service_pid: int | None  # None when the service runs elsewhere
    instance: str
    broker_pid: int | None = None  # Mosquitto's, when started here


async def wait_for_service(address: BrokerAddress, instance: str, timeout: float) -> None:
    """Until the instance's retained `state` says online."""
    topic = service_topic(instance, ServiceTopic.STATE)
    await asyncio.wait_for(until_accepting(address), timeout)
    async with MqttProbe(address, topic) as probe:
        await probe.expect_message(ServiceState, topic, lambda s: s.online, timeout=timeout)


def model_flags(models: Sequence[str], model_cache: str | os.PathLike[str] | None) -> list[str]:
    """`up` flags serving `models` from the cache they were prepared in (the child process
    gets no `SCIOT_` variables, so the cache is passed explicitly)."""
    from sciot_mqtt.models.cache import cache_root

    return ["--models", ",".join(models), "--model-cache", str(cache_root(model_cache))]


@contextlib.asynccontextmanager
async def service_process(
    address: BrokerAddress,
    instance: str,
    args: Sequence[str],
    log_path: Path,
    start_timeout: float,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`sciot-mqtt up --port {port} --instance {instance} {args}` as a child process; yield
    once its `state` says online; stop it (SIGTERM, then SIGKILL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIOT_")}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sciot_mqtt",
            "up",
            "--port",
            str(address.port),
            "--instance",
            instance,
            *args,
            stdout=log,
            stderr=log,
            env=env,
        )
        try:
            waiting = asyncio.ensure_future(wait_for_service(address, instance, start_timeout))
            exited = asyncio.ensure_future(process.wait())
            await asyncio.wait([waiting, exited], return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                waiting.cancel()
                raise ConfigurationError(
                    f"the service exited with {process.returncode}; see {log_path}"
                )
            exited.cancel()
            waiting.result()
            yield process
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@contextlib.asynccontextmanager
async def edge_stack(
    broker: BrokerKind,
    workdir: Path,
    *,
    instance: str = "edge",
    service_args: Sequence[str] = (),
    mosquitto_config: str = "",
    start_timeout: float = 60.0,
    log_name: str = "service.log",
) -> AsyncIterator[Edge]:
    """Start the broker (Mosquitto as a child process, or amqtt inside the service) and the
    service; yield once the service is online; stop both (SIGTERM, then SIGKILL)."""
    async with contextlib.AsyncExitStack() as stack:
        if broker == "mosquitto":
            mosquitto = MosquittoBroker(extra_config=mosquitto_config)
            await stack.enter_async_context(mosquitto)
            address = mosquitto.address
            where = ["--external-broker"]
            name = "Mosquitto (child process)"
        elif broker == "amqtt":
            address = BrokerAddress("127.0.0.1", free_port())
            where = []
            name = "amqtt (embedded in the service process)"
        else:
            raise ConfigurationError(f"unknown broker {broker!r}: use mosquitto or amqtt")
        process = await stack.enter_async_context(
            service_process(
                address, instance, [*where, *service_args], workdir / log_name, start_timeout
            )
        )
        broker_pid = mosquitto.pid if broker == "mosquitto" else None
        yield Edge(address, name, process.pid, instance, broker_pid)


@contextlib.asynccontextmanager
async def fleet_stack(
    names: Sequence[str],
    workdir: Path,
    *,
    service_args: Sequence[str] = (),
    start_timeout: float = 60.0,
    log_prefix: str = "fleet",
) -> AsyncIterator[list[Edge]]:
    """Mosquitto (a child process) and one `sciot-mqtt up --external-broker` process per
    name, started one after the other; yield once all are online, one `Edge` each."""
    async with contextlib.AsyncExitStack() as stack:
        mosquitto = MosquittoBroker()
        await stack.enter_async_context(mosquitto)
        edges = []
        for name in names:
            process = await stack.enter_async_context(
                service_process(
                    mosquitto.address,
                    name,
                    ["--external-broker", *service_args],
                    workdir / f"{log_prefix}-{name}.log",
                    start_timeout,
                )
            )
            edges.append(
                Edge(
                    mosquitto.address, "Mosquitto (child process)", process.pid, name, mosquitto.pid
                )
            )
        yield edges
