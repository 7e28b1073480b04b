"""One inference on the device: plan the split, run the head, offload, or finish locally.

The device's lifecycle (`device.py`) says whether it may offload, and its inbox
(`inbox.py`) what the service decided; this module does the work of an inference with
that, on the device's compute threads, through its emulated chip and link, and accounts
for every `infer` it publishes.

A probe asked for while the device offloads is answered off the critical path: the user's
inference runs at its split, then the operators it did not run are timed one at a time while
the chip is idle, giving way to users' inferences between operators (topics.md, rule 1).
An offload the service itself predicts slower than this device's own device-only time is a
link check: the user's inference runs locally, and a small `echo` goes out beside it, within
the echo budget (topics.md, rule 8); its round trip is reported with the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from sciot_mqtt.device.compute import ComputeEmulator
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.device.offload import Fallback, ServiceChannel
from sciot_mqtt.models.pool import ComputePool
from sciot_mqtt.protocol import (
    U32_MAX,
    Assign,
    DeviceMode,
    InferResult,
    SplitDecision,
)
from sciot_mqtt.transport import MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.device.report import DeviceSummary
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.models.tasks import OutputSummary
    from sciot_mqtt.settings import DeviceSettings

InferencePath = Literal["offload", "local", "fallback"]
"""How an inference ended: the service answered; run locally as planned; or fell back."""


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    """One inference as the device saw it."""

    seq: int
    split: int
    path: InferencePath
    reason: str
    head_ms: float  # operators run on the device before sending (all of them when local)
    total_ms: float  # input to result, on the device's clock
    sent_bytes: int
    output: bytes
    result: OutputSummary  # the output as the model's task reads it
    matches_local: bool | None = None
    rtt_ms: float | None = None  # publish of `infer` to arrival of `result` (offload only)
    decision_reason: str | None = None  # why the service chose this split (None if pinned)
    edge_ms: float | None = None  # the service's tail compute, from the result
    service_ms: float | None = None  # the service's receive to publish, from the result


class DeviceState(Protocol):
    """What an inference needs to know of the device it runs on (`Device` provides it)."""

    @property
    def device_id(self) -> str: ...
    @property
    def session(self) -> int: ...
    @property
    def mode(self) -> DeviceMode: ...
    @property
    def assignment(self) -> Assign | None: ...
    @property
    def decision(self) -> SplitDecision | None: ...
    @property
    def followed_decision(self) -> SplitDecision | None:
        """The last decision that was not a probe."""
        ...

    @property
    def mqtt(self) -> MqttSession | None:
        """The live connection, None while disconnected."""
        ...

    async def service_unresponsive(self) -> None:
        """A result did not come in time."""
        ...


log = logging.getLogger(__name__)


class InferenceRunner:
    """Runs a device's inferences; owns its compute, emulation and requests in flight."""

    def __init__(
        self,
        device: DeviceState,
        *,
        packages: Mapping[str, ModelPackage],
        compute: ComputePool,
        emulation: Emulation,
        summary: DeviceSummary,
        settings: DeviceSettings,
    ) -> None:
        """`settings` are read at each inference: `split` pins the split, `result_timeout`
        bounds the wait for a result, `models[0]` runs before any assignment."""
        self.device = device
        self.settings = settings
        self.packages = packages
        self.compute = compute
        self.link = emulation.link
        self.chip = emulation.chip
        self.summary = summary
        self._seq = 0
        # Requests to the service: `infer` out, `result`/`error` back, `timings`.
        self.channel = ServiceChannel(device, link=self.link, summary=summary, settings=settings)
        self._probed: int | None = None  # decision number of the probe already answered
        # The chip computes one thing at a time: users' heads and tails, and refresh ops.
        self._chip = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None  # a probe answered beside inferences
        self._checks: set[asyncio.Task[float | None]] = set()  # echoes beside local runs
        self._local_ms: float | None = None  # EMA of this device's device-only compute time

    # --- planning -------------------------------------------------------------------------

    def model_package(self) -> ModelPackage:
        """The assigned model's package, or before any assignment the first one carried."""
        assignment = self.device.assignment
        model = assignment.model if assignment else self.settings.models[0]
        package = self.packages.get(model)
        if package is None:
            raise RuntimeError(f"device {self.device.device_id} has no prepared model {model!r}")
        return package

    def compute_emulator(self, package: ModelPackage) -> ComputeEmulator:
        return self.chip.emulator(package)

    def plan(self, package: ModelPackage) -> tuple[int, str, SplitDecision | None]:
        """The split for the next inference, why, and the decision followed (N: local)."""
        n = package.num_ops
        if self.device.mode != "offload":
            return n, "local", None
        if self.settings.split is not None:
            return min(self.settings.split, n), "pinned", None
        decision = self.device.decision
        if decision is not None and decision.mode == "probe":
            followed = self.device.followed_decision
            if decision.decision != self._probed and not _offloads(followed, package):
                # Run locally anyway: that run is the probe, at no extra cost.
                return n, "probe", decision
            decision = followed  # offloading: the probe is answered beside (`infer`)
        if decision is None or decision.model != package.model_id:
            return n, "local", None
        if decision.mode == "local" or decision.split >= n:
            return n, "local", decision
        return decision.split, "decision", decision

    def _probe_to_refresh(self, package: ModelPackage, split: int) -> SplitDecision | None:
        """The probe to answer beside an inference offloaded at `split`, if one is due."""
        decision = self.device.decision
        if (
            decision is None
            or decision.mode != "probe"
            or decision.decision == self._probed
            or decision.model != package.model_id
            or split >= package.num_ops
            or self._refresh is not None
        ):
            return None
        return decision

    async def settle(self, timeout: float) -> None:
        """Wait (up to `timeout` s) for a refresh or link checks under way to end."""
        tasks = {*self._checks, *([self._refresh] if self._refresh else [])}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self) -> None:
        """Stop measurements under way (the device is leaving)."""
        tasks = {*self._checks, *([self._refresh] if self._refresh else [])}
        self._refresh = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _observe_local(self, compute_ms: float) -> None:
        last = self._local_ms
        self._local_ms = compute_ms if last is None else last + 0.2 * (compute_ms - last)

    def _is_link_check(self, followed: SplitDecision | None) -> bool:
        """An offload predicted slower than running everything here only measures the link:
        the user need not wait for it."""
        return (
            followed is not None
            and followed.predicted_ms is not None
            and self._local_ms is not None
            and followed.predicted_ms > self._local_ms
        )

    def _check_link(self, package: ModelPackage, seq: int, split: int) -> str:
        """Send an echo beside local run `seq` if the budget pays for one (one at a time);
        why the inference runs locally, for its record."""
        echo = self.channel.prepare_echo(seq, package.boundaries[split].nbytes)
        if echo is None:
            return "link check: no echo due"
        check = asyncio.create_task(
            self.channel.echo(echo), name=f"link-check-{self.device.device_id}"
        )
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)
        return "link check beside"

    # --- running --------------------------------------------------------------------------

    async def infer(self, data: np.ndarray, *, verify: bool = False) -> InferenceRecord:
        """One inference on ``data`` (an image of any size, or an array of the model's input
        shape; ``ModelPackage.quantize_input``): split as planned, offload, and finish
        locally if the edge fails."""
        package = self.model_package()
        x = package.quantize_input(data)
        seq = self._seq
        self._seq = (self._seq + 1) & U32_MAX
        split, reason, followed = self.plan(package)
        planned = reason  # "pinned" by the device's own setting: probes are not for it
        if planned == "decision" and self._is_link_check(followed):
            # The user is served locally; the link is checked beside (an echo, not `infer`).
            reason = self._check_link(package, seq, split)
            split = package.num_ops
        if reason == "probe" and followed is not None:
            self._probed = followed.decision
        started = time.perf_counter()  # a wait for the chip (a refresh op) is the user's
        emulator = self.compute_emulator(package)
        async with self._chip:
            tensors, op_seconds = await self._run_head(package, emulator, split, x)
        device_ms = [t * 1000 for t in op_seconds]
        sent = 0
        rtt_ms = None
        reply: InferResult | None = None
        path: InferencePath
        if split == package.num_ops:
            output = tensors[package.output.name]
            path = "local"
            self._observe_local(sum(device_ms))
            await self.channel.publish_timings(package, seq, reason, device_ms)
        else:
            try:
                output, sent, reply, rtt_ms = await self.channel.offload(
                    package, seq, split, followed, tensors, device_ms
                )
                path, reason = "offload", "answered"
            except Fallback as why:
                async with self._chip:
                    output = await self._run_tail(package, emulator, split, tensors)
                path, reason = "fallback", str(why)
                if reason == "timeout":
                    await self.device.service_unresponsive()
        total_ms = (time.perf_counter() - started) * 1000
        output = np.asarray(output)
        matches = None
        if verify:
            whole = await self.compute.run(lambda: self.compute.runner(package).run_whole(x))
            matches = bool(np.asarray(whole).tobytes() == output.tobytes())
        self._count(path, reason)
        refresh = path == "offload" and planned == "decision"
        probe = self._probe_to_refresh(package, split) if refresh else None
        if probe is not None:
            self._probed = probe.decision
            self._refresh = asyncio.create_task(
                self._refresh_tail(package, emulator, seq, split, tensors, device_ms, output),
                name=f"refresh-{self.device.device_id}",
            )
        return InferenceRecord(
            seq=seq,
            split=split,
            path=path,
            reason=reason,
            head_ms=sum(device_ms),
            total_ms=total_ms,
            sent_bytes=sent,
            output=output.tobytes(),
            result=package.summarize(output),
            matches_local=matches,
            rtt_ms=rtt_ms,
            decision_reason=followed.reason if followed else None,
            edge_ms=sum(reply.edge_ms) if reply else None,
            service_ms=reply.service_ms if reply else None,
        )

    async def _emulate_wait(self, target_s: float, measured_s: float) -> None:
        """Make compute that took `measured_s` take `target_s`, as on the emulated chip.

        Awaited on the event loop, not slept on a compute thread, so that devices sharing
        a `ComputePool` never hold a thread while they stand in for a slower chip."""
        if target_s > measured_s:
            await asyncio.sleep(target_s - measured_s)

    async def _run_head(
        self, package: ModelPackage, emulator: ComputeEmulator, split: int, x: np.ndarray
    ) -> tuple[dict[str, np.ndarray], list[float]]:
        """Operators [0, split), taking the profile's time for each."""
        compute = self.compute
        tensors, measured = await compute.run(lambda: compute.runner(package).run_head(split, x))
        target = [emulator.op_seconds(i, t) for i, t in enumerate(measured)]
        await self._emulate_wait(sum(target), sum(measured))
        return tensors, target

    async def _run_tail(
        self,
        package: ModelPackage,
        emulator: ComputeEmulator,
        split: int,
        tensors: dict[str, np.ndarray],
    ) -> np.ndarray:
        compute = self.compute

        def tail() -> tuple[np.ndarray, float]:
            started = time.perf_counter()
            output = compute.runner(package).run_tail(split, tensors)
            return output, time.perf_counter() - started

        output, measured = await compute.run(tail)
        target = sum(emulator.op_seconds(i, 0.0) for i in range(split, package.num_ops))
        await self._emulate_wait(target, measured)
        return output

    # --- refreshing operator times beside inferences ------------------------------------

    async def _refresh_tail(
        self,
        package: ModelPackage,
        emulator: ComputeEmulator,
        seq: int,
        split: int,
        tensors: dict[str, np.ndarray],
        head_ms: list[float],
        expected: np.ndarray,
    ) -> None:
        """Time ops [split, N) of inference `seq` from its boundary tensors, one op per turn
        of the chip, check the output against the service's result, report as a probe."""
        try:
            live, tail_ms = tensors, []
            compute = self.compute
            for i in range(split, package.num_ops):
                async with self._chip:  # a user's inference waiting goes first (FIFO)
                    live, measured = await compute.run(
                        lambda i=i, live=live: compute.runner(package).run_op(i, live)
                    )
                    target = emulator.op_seconds(i, measured)
                    await self._emulate_wait(target, measured)
                tail_ms.append(target * 1000)
            summary = self.summary
            summary.refreshes += 1
            summary.refresh_device_ms += sum(tail_ms)
            summary.measure_device_ms += sum(tail_ms)
            if np.asarray(live[package.output.name]).tobytes() != expected.tobytes():
                summary.refresh_mismatches += 1
                log.warning("refresh of inference %d: output differs from the service's", seq)
            await self.channel.publish_timings(
                package, seq, "probe", head_ms + tail_ms, refresh=True
            )
        finally:
            if self._refresh is asyncio.current_task():
                self._refresh = None

    def _count(self, path: InferencePath, reason: str) -> None:
        summary = self.summary
        summary.inferences += 1
        if path == "offload":
            summary.offloaded += 1
        elif path == "local":
            summary.local += 1
        else:
            summary.fallbacks_local += 1
            summary.fallback_reasons[reason] = summary.fallback_reasons.get(reason, 0) + 1


def _offloads(decision: SplitDecision | None, package: ModelPackage) -> bool:
    return (
        decision is not None
        and decision.model == package.model_id
        and decision.mode == "offload"
        and decision.split < package.num_ops
    )
