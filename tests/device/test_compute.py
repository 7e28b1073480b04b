"""Compute emulation: per-operator times of emulated chips, with seeded draws."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.device.compute import (
    ComputeEmulator,
    ComputeProfile,
    Distribution,
    load_compute_profile,
)
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models.catalog import resolve_package
from sciot_mqtt.models.package import ModelPackage


@pytest.fixture(scope="module")
def fomo96(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return resolve_package("fomo96", tmp_path_factory.mktemp("models"))


# -- compute -----------------------------------------------------------------------------


def test_host_takes_what_it_measured(fomo96: ModelPackage) -> None:
    profile = load_compute_profile("host", fomo96)
    assert profile.is_host and profile.distribution == "static"
    emu = ComputeEmulator(profile)
    assert emu.op_seconds(3, 0.0123) == 0.0123
    assert emu.op_seconds(99, -1.0) == 0.0  # any op: it has no table
    emu.set_scale(3.0)
    assert emu.op_seconds(0, 0.01) == pytest.approx(0.03)


def test_esp32s3_uses_reference_times_scaled(fomo96: ModelPackage) -> None:
    reference = [op.reference_ms for op in fomo96.ops]
    assert all(ms is not None for ms in reference)
    full = load_compute_profile("esp32s3", fomo96)
    assert full.per_op_ms == tuple(reference)
    fast = load_compute_profile("esp32s3:0.2", fomo96)
    assert fast.per_op_ms == pytest.approx([ms * 0.2 for ms in reference if ms is not None])
    emu = ComputeEmulator(fast)
    for i, ms in enumerate(reference):
        assert emu.op_seconds(i, 0.0) == pytest.approx((ms or 0.0) * 0.2 / 1000)
    assert emu.op_seconds(0, 10.0) == 10.0  # never faster than it really was
    emu.set_scale(2.0)
    assert emu.op_seconds(0, 0.0) == pytest.approx((reference[0] or 0.0) * 0.4 / 1000)
    with pytest.raises(IndexError):
        emu.op_seconds(fomo96.num_ops, 0.0)
    with pytest.raises(ValueError, match="scale"):
        emu.set_scale(0.0)


@pytest.mark.parametrize(
    ("spec", "distribution", "spread"),
    [
        ("esp32s3:0.2:gaussian:0.1", "gaussian", 0.1),
        ("esp32s3:uniform:0.05", "uniform", 0.05),
        ("esp32s3:1:gaussian", "gaussian", 0.1),
        ("esp32s3:exponential", "exponential", 1.0),
        ("host:gaussian:0.3", "gaussian", 0.3),
    ],
)
def test_distribution_suffix(
    fomo96: ModelPackage, spec: str, distribution: Distribution, spread: float
) -> None:
    profile = load_compute_profile(spec, fomo96)
    assert (profile.name, profile.distribution, profile.spread) == (spec, distribution, spread)


@pytest.mark.parametrize(
    ("distribution", "spread", "sd"),
    [
        ("static", 0.5, 0.0),
        ("gaussian", 0.1, 0.1),
        ("uniform", 0.2, 0.2 / math.sqrt(3)),
        ("exponential", 1.0, 1.0),
        ("exponential", 0.3, 0.3),
    ],
)
def test_distributions_have_the_right_mean_and_spread(
    distribution: Distribution, spread: float, sd: float
) -> None:
    emu = ComputeEmulator(ComputeProfile("t", (100.0, 40.0), distribution, spread), seed=5)
    draws = np.array([emu.op_seconds(0, 0.0) for _ in range(20_000)]) * 1000
    assert draws.mean() == pytest.approx(100.0, rel=0.02)
    assert draws.std() == pytest.approx(100.0 * sd, rel=0.05, abs=1e-9)
    assert draws.min() >= 0
    if distribution == "uniform":
        assert draws.min() >= 80.0 and draws.max() <= 120.0
    if distribution == "exponential":
        assert draws.min() >= 100.0 * (1 - spread)


def test_noisy_op_stands_out(fomo96: ModelPackage) -> None:
    emu = ComputeEmulator(load_compute_profile("esp32s3:0.2:gaussian:0.02", fomo96), seed=6)
    noisy = 7
    emu.noisy_ops[noisy] = 0.3
    runs = np.array([[emu.op_seconds(i, 0.0) for i in range(fomo96.num_ops)] for _ in range(1000)])
    cv = runs.std(axis=0) / runs.mean(axis=0)
    assert cv[noisy] > 0.15
    assert np.delete(cv, noisy).max() < 0.05


def test_noisy_op_on_a_static_profile_turns_gaussian() -> None:
    emu = ComputeEmulator(ComputeProfile("t", (10.0, 10.0)), seed=7)
    emu.noisy_ops[1] = 0.4
    steady = {emu.op_seconds(0, 0.0) for _ in range(100)}
    noisy = np.array([emu.op_seconds(1, 0.0) for _ in range(2000)])
    assert steady == {0.010}
    assert noisy.std() / noisy.mean() > 0.3


def test_compute_file(tmp_path: Path, fomo96: ModelPackage) -> None:
    path = tmp_path / "mcu.json"
    times = [float(i + 1) for i in range(fomo96.num_ops)]
    path.write_text(json.dumps({"per_op_ms": times, "distribution": "gaussian", "scale": 2}))
    profile = load_compute_profile(str(path), fomo96)
    assert profile.name == "mcu"
    assert profile.per_op_ms == tuple(2 * t for t in times)
    assert (profile.distribution, profile.spread) == ("gaussian", 0.1)
    scaled = load_compute_profile(f"{path}:0.5:uniform:0.2", fomo96)
    assert scaled.per_op_ms == tuple(times)
    assert (scaled.distribution, scaled.spread) == ("uniform", 0.2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("esp32", r"unknown compute profile 'esp32'.*host, esp32s3"),
        ("esp32s3:fast", "'fast' is not a scale factor"),
        ("esp32s3:0", "scale factor must be > 0"),
        ("esp32s3:1:weird", "'weird' is not a distribution|distribution must be one of"),
        ("esp32s3:1:gaussian:-1", "spread must be >= 0"),
        ("esp32s3:1:gaussian:0.1:more", "too many parts"),
        ("host:2", "real speed"),
        ("/nonexistent/mcu.json", "file not found"),
    ],
)
def test_bad_compute_specs(fomo96: ModelPackage, spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_compute_profile(spec, fomo96)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"per_op_ms": [1.0, 2.0]}, "has 2 times but model 'fomo96' has 25 operators"),
        ({"per_op_ms": []}, "non-empty list"),
        ({"per_op_ms": ["a"]}, "numbers only"),
        ({"per_op_ms": [1.0], "sigma": 1}, "unknown compute profile field"),
        ({"per_op_ms": [1.0], "distribution": "pareto"}, "distribution must be one of"),
    ],
)
def test_bad_compute_files(
    tmp_path: Path, fomo96: ModelPackage, content: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigurationError, match=message):
        load_compute_profile(str(path), fomo96)


def test_esp32s3_without_measurements_is_an_estimate(fomo96: ModelPackage) -> None:
    """fomo96 with its measurements taken away is estimated from its operators' work, close
    to what was measured; the profile says it is an estimate."""
    measured = load_compute_profile("esp32s3", fomo96)
    assert not measured.estimated and "measured on esp32s3" in measured.basis
    unmapped = dataclasses.replace(
        fomo96,
        reference=None,
        ops=[dataclasses.replace(op, reference_ms=None) for op in fomo96.ops],
    )
    estimate = load_compute_profile("esp32s3:0.05", unmapped)
    assert estimate.estimated and estimate.basis.startswith("ESTIMATED")
    assert "fitted on fomo96" in estimate.basis and "times 0.05" in estimate.basis
    assert estimate.per_op_ms is not None and measured.per_op_ms is not None
    assert len(estimate.per_op_ms) == fomo96.num_ops
    assert sum(estimate.per_op_ms) == pytest.approx(0.05 * sum(measured.per_op_ms), rel=0.05)
    assert load_compute_profile("host", unmapped).is_host
    # Times measured on another chip are not this one's: estimated too.
    other = dataclasses.replace(fomo96, reference="esp32-other-layers")
    assert load_compute_profile("esp32s3", other).estimated
