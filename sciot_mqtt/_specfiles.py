"""Reading the small JSON and `name:value` specs that configure emulation, with clear errors."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sciot_mqtt.errors import ConfigurationError


def looks_like_file(spec: str) -> bool:
    return spec.lower().endswith(".json") or Path(spec).expanduser().is_file()


def read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} file {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{what} file {path} is not valid JSON: {exc}") from None


def number(
    data: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: float | None = None,
    none_is: float | None = None,
) -> float:
    """``data[key]`` as a float, with clear errors; ``None`` maps to ``none_is`` if given."""
    if key not in data:
        if default is None:
            raise ConfigurationError(f"{where}: missing {key}")
        return default
    value = data[key]
    if value is None and none_is is not None:
        return none_is
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def parse_float(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{where}: {text!r} is not a {what}") from None


def parse_seconds(text: str, where: str) -> float:
    value = parse_float(text.strip().removesuffix("s"), where, "time in seconds")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigurationError(f"{where}: the time must be >= 0 seconds, got {text!r}")
    return value
