"""Kernel link shaping: devices in a network namespace behind a veth pair shaped with `tc`.

Layout for link number `index` (root needed; iproute2's `ip` and `tc`):

    root namespace                         namespace sciot-{index}
    broker 127.0.0.1  <-  proxy on  10.231.{index}.1 (sciot-h{index})
                                    ==veth==  10.231.{index}.2 (sciot-d{index})  <- devices

The device side's egress is the uplink, the root side's egress the downlink. With the `netem`
qdisc the kernel adds latency, jitter, loss and rate itself; many kernels (this project's CI
machine's among them) ship without it, and then `tbf` shapes the rate and the proxy in front of
the broker adds latency, jitter and loss (`LinkShaping.delay_by` says which). The broker stays
on loopback: only the proxy listens on the veth address.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Literal, Self

import structlog

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.network.link import LinkProfile

__all__ = ["LinkShaping", "NetnsLink", "kernel_shaping_unavailable"]

_log = structlog.get_logger("sciot.netns")


@dataclass(frozen=True)
class LinkShaping:
    """What shapes a link in namespace mode."""

    rate_by: Literal["netem", "tbf", "none"]
    delay_by: Literal["netem", "proxy"]

    def describe(self) -> str:
        return f"rate by {self.rate_by}, latency/jitter/loss by {self.delay_by}"


def kernel_shaping_unavailable() -> str | None:
    """Why namespace mode cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return (
            "kernel shaping (network namespaces and tc) needs root; "
            "run as root or use --network proxy"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"kernel shaping needs {tool!r} (Debian/Ubuntu: apt-get install iproute2)"
    return None


class NetnsLink:
    """One shaped link: a namespace, a veth pair, qdiscs; removed again on exit."""

    def __init__(self, profile: LinkProfile, index: int) -> None:
        if not 0 <= index < 250:
            raise ValueError("link index must be 0..249")
        self.profile = profile
        self.namespace = f"sciot-{index}"
        self.host_interface = f"sciot-h{index}"
        self.device_interface = f"sciot-d{index}"
        self.host_address = f"10.231.{index}.1"
        self.device_address = f"10.231.{index}.2"
        self.shaping = LinkShaping("none", "proxy")

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix of a command line that runs the command inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def proxy_profile(self) -> LinkProfile:
        """What the proxy must still add: nothing the kernel already does."""
        if self.shaping.delay_by == "netem":
            return replace(
                self.profile,
                latency_ms=0.0,
                jitter_ms=0.0,
                loss=0.0,
                uplink_kbps=math.inf,
                downlink_kbps=math.inf,
            )
        if self.shaping.rate_by == "tbf":
            return replace(self.profile, uplink_kbps=math.inf, downlink_kbps=math.inf)
        return self.profile

    async def __aenter__(self) -> Self:
        reason = kernel_shaping_unavailable()
        if reason is not None:
            raise ConfigurationError(reason)
        await self._remove(quiet=True)  # a previous run killed before cleaning up
        ns, host, dev = self.namespace, self.host_interface, self.device_interface
        try:
            await _ip("netns", "add", ns)
            await _ip("link", "add", host, "type", "veth", "peer", "name", dev)
            await _ip("link", "set", dev, "netns", ns)
            await _ip("addr", "add", f"{self.host_address}/24", "dev", host)
            await _ip("link", "set", host, "up")
            await _ip("-n", ns, "addr", "add", f"{self.device_address}/24", "dev", dev)
            await _ip("-n", ns, "link", "set", dev, "up")
            await _ip("-n", ns, "link", "set", "lo", "up")
            self.shaping = await self._shape()
        except BaseException:
            await self._remove(quiet=True)
            raise
        _log.info(
            "namespace link up",
            namespace=ns,
            profile=self.profile.name,
            shaping=self.shaping.describe(),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._remove(quiet=False)

    async def _shape(self) -> LinkShaping:
        p = self.profile
        up = ["-n", self.namespace, "qdisc", "add", "dev", self.device_interface, "root"]
        down = ["qdisc", "add", "dev", self.host_interface, "root"]
        # Latency is split between the two directions as the profile's one-way figures are.
        netem_up = _netem_args(p.latency_ms, p.jitter_ms, p.loss, p.uplink_kbps)
        netem_down = _netem_args(p.latency_ms, p.jitter_ms, p.loss, p.downlink_kbps)
        if await _tc_ok(*up, "netem", *netem_up):
            await _tc(*down, "netem", *netem_down)
            return LinkShaping("netem", "netem")
        rate_by: Literal["tbf", "none"] = "none"
        if not math.isinf(p.uplink_kbps):
            await _tc(*up, "tbf", *_tbf_args(p.uplink_kbps))
            rate_by = "tbf"
        if not math.isinf(p.downlink_kbps):
            await _tc(*down, "tbf", *_tbf_args(p.downlink_kbps))
            rate_by = "tbf"
        return LinkShaping(rate_by, "proxy")

    async def _remove(self, *, quiet: bool) -> None:
        # Deleting the namespace deletes the veth pair with it.
        for args in (("netns", "del", self.namespace), ("link", "del", self.host_interface)):
            code, err = await _run("ip", *args)
            if code and not quiet and "No such file" not in err and "Cannot find" not in err:
                _log.warning("cleanup failed", command=" ".join(("ip", *args)), error=err)


def _netem_args(latency_ms: float, jitter_ms: float, loss: float, kbps: float) -> list[str]:
    args = ["delay", f"{latency_ms:g}ms"]
    if jitter_ms:
        args += [f"{jitter_ms:g}ms", "distribution", "paretonormal"]
    if loss:
        args += ["loss", f"{loss * 100:g}%"]
    if not math.isinf(kbps):
        args += ["rate", f"{kbps:g}kbit"]
    return args


def _tbf_args(kbps: float) -> list[str]:
    # The bucket holds 10 ms of traffic (never less than a few full frames); the queue
    # holds up to 500 ms before the kernel drops, like a generous modem buffer.
    burst = max(int(kbps * 1000 / 8 * 0.010), 4 * 1514)
    return ["rate", f"{kbps:g}kbit", "burst", str(burst), "latency", "500ms"]


async def _run(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    return process.returncode or 0, err.decode(errors="replace").strip()


async def _ip(*args: str) -> None:
    code, err = await _run("ip", *args)
    if code:
        raise ConfigurationError(f"ip {' '.join(args)} failed: {err}")


async def _tc(*args: str) -> None:
    code, err = await _run("tc", *args)
    if code:
        raise ConfigurationError(f"tc {' '.join(args)} failed: {err}")


async def _tc_ok(*args: str) -> bool:
    code, _ = await _run("tc", *args)
    return code == 0
