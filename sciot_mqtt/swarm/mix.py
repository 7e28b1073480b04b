"""What a swarm is made of: device compute and link profiles in proportions, the workload,
and churn. Read from a TOML or JSON file (`--mix FILE`); every field has a default.

    # mix.toml
    compute = { host = 0.5, "esp32s3:0.05" = 0.5 }
    links = { wifi = 0.6, lte = 0.3, congested = 0.1 }

    [workload]
    arrivals = "poisson"     # fixed | poisson | burst
    rate_hz = 1.0            # mean inferences per second, per device
    burst_size = 5           # burst: this many back to back, bursts at rate_hz / burst_size

    [churn]
    join_over_s = 5          # devices join spread over the first seconds
    leave_per_min = 0.05     # share of devices leaving cleanly per minute ...
    crash_per_min = 0.05     # ... and crashing without a disconnect (the will tells)
    rejoin_after_s = 5       # a device that left or crashed comes back after this
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sciot_mqtt.errors import ConfigurationError

__all__ = ["Churn", "DevicePlan", "Mix", "Workload", "load_mix", "plan_devices"]


#: Without a mix file: half host-speed devices, half ESP32-class ones (the reference ESP32-S3
#: profile at 5 %, about 255 ms a whole inference), on a spread of links.
DEFAULT_COMPUTE = {"host": 0.5, "esp32s3:0.05": 0.5}
DEFAULT_LINKS = {"wifi": 0.5, "lte": 0.3, "congested": 0.2}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(_Section):
    arrivals: Literal["fixed", "poisson", "burst"] = Field(
        "fixed", description="fixed interval, Poisson arrivals, or bursts"
    )
    rate_hz: float = Field(1.0, gt=0, le=1000, description="mean inferences/s per device")
    burst_size: int = Field(5, ge=1, le=1000, description="requests per burst (burst only)")


class Churn(_Section):
    join_over_s: float = Field(5.0, ge=0, description="devices join spread over this time")
    leave_per_min: float = Field(0.0, ge=0, le=60, description="share leaving cleanly / min")
    crash_per_min: float = Field(0.0, ge=0, le=60, description="share crashing / min")
    rejoin_after_s: float = Field(5.0, ge=0, description="absence before coming back (s)")


class Mix(_Section):
    compute: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_COMPUTE), description="compute profile -> share"
    )
    links: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_LINKS), description="link profile -> share"
    )
    workload: Workload = Field(default_factory=Workload)  # type: ignore[arg-type]
    churn: Churn = Field(default_factory=Churn)  # type: ignore[arg-type]
    split: int | None = Field(None, ge=0, description="pin every device's split (default: decide)")
    result_timeout: float = Field(5.0, gt=0, description="device waits this long for a result")
    heartbeat_interval: float = Field(5.0, gt=0, description="until the service says otherwise")

    @field_validator("compute", "links")
    @classmethod
    def _shares(cls, shares: dict[str, float]) -> dict[str, float]:
        if not shares:
            raise ValueError("needs at least one profile")
        if any(share < 0 for share in shares.values()) or sum(shares.values()) <= 0:
            raise ValueError("shares must be >= 0 and not all 0")
        return shares

    def describe(self) -> dict[str, object]:
        return self.model_dump()


def load_mix(path: str | Path | None) -> Mix:
    if path is None:
        return Mix.model_validate({})
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the mix {file}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text.decode()) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        kind = "TOML" if file.suffix == ".toml" else "JSON"
        raise ConfigurationError(f"mix {file} is not valid {kind}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"mix {file}: expected a table/object at the top")
    try:
        return Mix.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"mix {file} is invalid:\n{exc}") from exc


class DevicePlan(BaseModel):
    """One simulated device: who it is and what it stands for."""

    model_config = ConfigDict(frozen=True)

    id: str
    index: int
    compute: str
    link: str
    seed: int
    join_at_s: float = 0.0  # when it first joins, counted from the swarm's start


def _apportion(shares: Mapping[str, float], count: int) -> list[str]:
    """`count` labels in the given proportions (largest remainder), interleaved."""
    total = sum(shares.values())
    exact = {name: share / total * count for name, share in shares.items()}
    whole = {name: int(value) for name, value in exact.items()}
    left = count - sum(whole.values())
    for name in sorted(exact, key=lambda n: exact[n] - whole[n], reverse=True)[:left]:
        whole[name] += 1
    # Interleave so that any prefix of the swarm (devices joining first) is a fair sample.
    labels: list[tuple[float, str]] = []
    for name, n in whole.items():
        labels += [((i + 0.5) / n, name) for i in range(n)]
    return [name for _, name in sorted(labels)]


def plan_devices(mix: Mix, count: int, *, prefix: str = "swarm", seed: int = 0) -> list[DevicePlan]:
    """`count` devices: computes in the mix's proportions, and within each compute profile
    links in the mix's proportions, so that every pairing occurs when there are enough."""
    computes = _apportion(mix.compute, count)
    groups: dict[str, list[int]] = {}
    for i, compute in enumerate(computes):
        groups.setdefault(compute, []).append(i)
    links: dict[int, str] = {}
    for members in groups.values():
        links.update(zip(members, _apportion(mix.links, len(members)), strict=True))
    width = len(str(max(count - 1, 0)))
    return [
        DevicePlan(
            id=f"{prefix}-{i:0{width}d}",
            index=i,
            compute=computes[i],
            link=links[i],
            seed=seed * 100_003 + i,
            join_at_s=mix.churn.join_over_s * i / count,
        )
        for i in range(count)
    ]
