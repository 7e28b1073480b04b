"""Emulated device compute: how long each operator takes on the chip a device stands in for.

## Compute profiles

``host`` runs at the host's real speed (it takes a distribution, for noise around the
measured time, but no scale factor). ``esp32s3`` makes operator ``i`` take
``package.ops[i].reference_ms``: the time the reference profile measured on an ESP32-S3
for the Keras layers that operator fuses. A model without such measurements (any model
but fomo96) gets an **estimate** instead: each operator's time from its work, at rates
fitted on the measured model (``models.cost``); the profile says so (``estimated``,
``basis``) and the device logs it. A spec adds, each optional and in this order, a
scale factor, a distribution and a spread: ``esp32s3:0.2`` (5 times faster than measured),
``esp32s3:0.2:gaussian:0.1``, ``esp32s3:uniform:0.05``. The spread is relative to the mean
``m``: ``gaussian`` draws with standard deviation ``spread * m``, ``uniform`` between
``m * (1 - spread)`` and ``m * (1 + spread)``, ``exponential`` ``m * (1 - spread)`` plus an
exponential of mean ``spread * m`` (spread 1, the default for it, is SCIoT's plain
exponential of mean ``m``), ``static`` always ``m``. Without a spread, gaussian and uniform
use 0.1. Draws are clipped at zero, and an operator never takes less than it really took. A
custom profile is a ``.json`` file: ``{"per_op_ms": [...], "distribution": "gaussian",
"spread": 0.05}`` with one time per deployed operator (and an optional ``scale``);
``profile.json:0.5`` scales it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import structlog

from sciot_mqtt._specfiles import looks_like_file, number, parse_float, read_json
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models.cost import estimate_ms, reference_rates
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.reference import load_reference_profiles

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

__all__ = [
    "DISTRIBUTIONS",
    "ComputeEmulator",
    "ComputeProfile",
    "Distribution",
    "EmulatedChip",
    "load_compute_profile",
]

Distribution = Literal["static", "gaussian", "uniform", "exponential"]
DISTRIBUTIONS: tuple[Distribution, ...] = get_args(Distribution)

#: Spread used when a distribution is named without one.
_DEFAULT_SPREAD: dict[Distribution, float] = {
    "static": 0.0,
    "gaussian": 0.1,
    "uniform": 0.1,
    "exponential": 1.0,
}


@dataclass(frozen=True, slots=True)
class ComputeProfile:
    """How long the device's operators take: real speed, or given per-operator times.

    ``per_op_ms`` is ``None`` for the host's real speed, else one mean time per deployed
    operator; ``spread`` is relative to that mean (see the module docstring).
    """

    name: str
    per_op_ms: tuple[float, ...] | None
    distribution: Distribution = "static"
    spread: float = 0.0
    estimated: bool = False  # per_op_ms estimated from the operators' work, not measured
    basis: str = ""  # where per_op_ms came from, in words

    def __post_init__(self) -> None:
        where = f"compute profile {self.name!r}"
        if not self.name:
            raise ConfigurationError("a compute profile needs a name")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigurationError(
                f"{where}: distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                f"got {self.distribution!r}"
            )
        if not (math.isfinite(self.spread) and self.spread >= 0):
            raise ConfigurationError(f"{where}: spread must be >= 0, got {self.spread}")
        if self.per_op_ms is not None:
            if not self.per_op_ms:
                raise ConfigurationError(f"{where}: per_op_ms is empty")
            bad = [v for v in self.per_op_ms if not (math.isfinite(v) and v >= 0)]
            if bad:
                raise ConfigurationError(f"{where}: per-op times must be >= 0, got {bad}")

    @property
    def is_host(self) -> bool:
        return self.per_op_ms is None


def _reference_devices() -> dict[str, str]:
    """Reference profile id -> the device it was measured on (e.g. ``esp32s3``)."""
    return {p.id: p.device for p in load_reference_profiles()}


def load_compute_profile(spec: str, package: ModelPackage) -> ComputeProfile:
    """``host``, a reference device (``esp32s3``) or a ``.json`` file, plus modifiers.

    Modifiers follow the name after ``:``, each optional, in this order: a scale factor,
    a distribution, a spread (``esp32s3:0.2:gaussian:0.1``).
    """
    text = spec.strip()
    head, *rest = text.split(":")
    head = head.strip()
    scale, distribution, spread = _parse_modifiers(rest, spec)
    if head.lower() == "host":
        if scale != 1.0:
            raise ConfigurationError(
                f"compute profile {spec!r}: host runs at the host's real speed and takes no "
                "scale factor"
            )
        dist = distribution or "static"
        return ComputeProfile(
            text, None, dist, spread if spread is not None else _DEFAULT_SPREAD[dist]
        )
    devices = sorted(set(_reference_devices().values()))
    estimated = False
    if head.lower() in devices:
        per_op, estimated, basis = _reference_times(head.lower(), package)
        base_dist: Distribution = "static"
        base_spread = 0.0
        name = text
    elif looks_like_file(head):
        path = Path(head).expanduser()
        per_op, base_dist, base_spread, file_name = _read_compute_file(path)
        name = file_name if not rest else f"{file_name}:{':'.join(rest)}"
        basis = f"per_op_ms from {path}"
        if len(per_op) != package.num_ops:
            raise ConfigurationError(
                f"{path}: per_op_ms has {len(per_op)} times but model {package.model_id!r} "
                f"has {package.num_ops} operators; give one time per deployed operator"
            )
    else:
        names = ", ".join(["host", *devices])
        raise ConfigurationError(
            f"unknown compute profile {spec!r}: use one of {names} (optionally "
            "NAME:SCALE[:DISTRIBUTION[:SPREAD]]), or a path to a .json file with per_op_ms"
        )
    if distribution is not None:
        dist = distribution
        final_spread = spread if spread is not None else _DEFAULT_SPREAD[distribution]
    else:
        dist = base_dist
        final_spread = spread if spread is not None else base_spread
    return ComputeProfile(
        name,
        tuple(v * scale for v in per_op),
        dist,
        final_spread,
        estimated=estimated,
        basis=basis + (f", times {scale:g}" if scale != 1.0 else ""),
    )


def _reference_times(device: str, package: ModelPackage) -> tuple[tuple[float, ...], bool, str]:
    """Per-operator times on ``device``: measured when the package has them, else estimated
    from each operator's work; whether they are estimated, and how they were got."""
    measured_on = _reference_devices().get(package.reference or "")
    if measured_on == device and all(op.reference_ms is not None for op in package.ops):
        times = tuple(float(op.reference_ms or 0.0) for op in package.ops)
        return times, False, f"measured on {device}, per layer ({package.reference})"
    try:
        rates = reference_rates(device)
    except ModelError as exc:
        raise ConfigurationError(f"compute profile {device!r}: {exc}") from exc
    basis = f"ESTIMATED from each operator's work; {rates.quality.describe()}"
    return estimate_ms(package.ops, rates), True, basis


def _parse_modifiers(
    parts: list[str], spec: str
) -> tuple[float, Distribution | None, float | None]:
    """``[SCALE][:DISTRIBUTION[:SPREAD]]`` after the profile name."""
    where = f"compute profile {spec!r}"
    items = [p.strip() for p in parts]
    scale = 1.0
    distribution: Distribution | None = None
    spread: float | None = None
    if items and items[0] not in DISTRIBUTIONS:
        scale = parse_float(items.pop(0), where, "scale factor")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"{where}: the scale factor must be > 0, got {scale}")
    if items:
        distribution = _distribution(items.pop(0), where)
    if items:
        spread = parse_float(items.pop(0), where, "spread")
        if not (math.isfinite(spread) and spread >= 0):
            raise ConfigurationError(f"{where}: the spread must be >= 0, got {spread}")
    if items:
        raise ConfigurationError(
            f"{where}: too many parts; the form is NAME[:SCALE][:DISTRIBUTION[:SPREAD]]"
        )
    return scale, distribution, spread


def _read_compute_file(path: Path) -> tuple[tuple[float, ...], Distribution, float, str]:
    data = read_json(path, "compute profile")
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigurationError(
            f'{where}: a compute profile is a JSON object {{"per_op_ms": [...]}}'
        )
    known = {"name", "per_op_ms", "distribution", "spread", "scale"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown compute profile field(s) {unknown}; known: {sorted(known)}"
        )
    raw = data.get("per_op_ms")
    if not isinstance(raw, list) or not raw:
        raise ConfigurationError(f"{where}: per_op_ms must be a non-empty list of milliseconds")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        raise ConfigurationError(f"{where}: per_op_ms must hold numbers only")
    scale = number(data, "scale", where, default=1.0)
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigurationError(f"{where}: scale must be > 0, got {scale}")
    dist = _distribution(data.get("distribution", "static"), where)
    spread = number(data, "spread", where, default=_DEFAULT_SPREAD[dist])
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: name must be a non-empty string")
    return tuple(float(v) * scale for v in raw), dist, spread, name


# -- compute emulator --------------------------------------------------------------------

_log = structlog.get_logger("sciot.device")


class ComputeEmulator:
    """How long each operator should take under a profile; the device sleeps the rest.

    ``op_seconds`` is called from the device's compute thread while ``set_scale`` may come
    from the event loop, so the random stream sits behind a lock.
    """

    def __init__(self, profile: ComputeProfile, *, seed: int = 0) -> None:
        self.profile = profile
        #: Operator index -> extra relative spread added to the profile's for that operator
        #: (a static profile turns gaussian there), to make one operator's timing unstable.
        self.noisy_ops: dict[int, float] = {}
        self._scale = 1.0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def scale(self) -> float:
        return self._scale

    def set_scale(self, factor: float) -> None:
        """Multiply every operator's mean time by ``factor`` from now on (1.0 = as loaded).

        With ``host`` a factor above 1 slows the real speed down; below 1 it has no effect,
        since no operator takes less than it really took.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor must be > 0, got {factor}")
        self._scale = float(factor)

    def mean_seconds(self, index: int, measured_s: float) -> float:
        """Operator ``index``'s mean time under the profile and scale, before noise."""
        per_op = self.profile.per_op_ms
        if per_op is None:
            return max(measured_s, 0.0) * self._scale
        if not 0 <= index < len(per_op):
            raise IndexError(
                f"op {index} outside the compute profile's 0..{len(per_op) - 1} operators"
            )
        return per_op[index] / 1000 * self._scale

    def op_seconds(self, index: int, measured_s: float) -> float:
        """How long operator ``index`` should take in all; never less than ``measured_s``."""
        measured_s = max(measured_s, 0.0)
        mean = self.mean_seconds(index, measured_s)
        extra = self.noisy_ops.get(index, 0.0)
        if extra < 0:
            raise ValueError(f"noisy_ops[{index}] must be >= 0, got {extra}")
        distribution = self.profile.distribution
        spread = self.profile.spread + extra
        if extra > 0 and distribution == "static":
            distribution = "gaussian"
        with self._lock:
            drawn = _draw(distribution, mean, spread, self._rng)
        return max(drawn, measured_s)


def _draw(
    distribution: Distribution, mean: float, spread: float, rng: np.random.Generator
) -> float:
    """One draw with the given mean and relative spread, clipped at zero."""
    if distribution == "static" or spread == 0 or mean == 0:
        return mean
    if distribution == "gaussian":
        value = rng.normal(mean, spread * mean)
    elif distribution == "uniform":
        value = rng.uniform(mean * (1 - spread), mean * (1 + spread))
    else:  # exponential: shifted so the mean stays `mean` and the deviation is spread*mean
        value = mean * (1 - spread) + rng.exponential(spread * mean)
    return max(float(value), 0.0)


def _distribution(value: object, where: str) -> Distribution:
    for name in DISTRIBUTIONS:
        if value == name:
            return name
    raise ConfigurationError(
        f"{where}: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {value!r}"
    )


class EmulatedChip:
    """One device's chip: a compute profile spec, turned into an emulator per model it runs
    (profiles such as ``esp32s3`` depend on the model's operators)."""

    def __init__(self, spec: str = "host", *, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self._emulators: dict[str, ComputeEmulator] = {}

    def emulator(self, package: ModelPackage) -> ComputeEmulator:
        """How long each operator of ``package`` takes on this chip (``host``: as measured)."""
        emulator = self._emulators.get(package.sha256)
        if emulator is None:
            profile = load_compute_profile(self.spec, package)
            if profile.estimated:
                _log.info(
                    "emulated compute times are an estimate",
                    profile=profile.name,
                    model=package.model_id,
                    run_ms=round(sum(profile.per_op_ms or ()), 1),
                    basis=profile.basis,
                )
            emulator = self._emulators[package.sha256] = ComputeEmulator(profile, seed=self.seed)
        return emulator
