"""Optional dependencies: the service needs none of them; a command that does says how to get
them before it starts, not halfway through."""

from __future__ import annotations

import importlib.util

from sciot_mqtt.errors import ConfigurationError

EXTRAS: dict[str, tuple[str, ...]] = {
    # The swarm: its live view, CPU and memory of the processes, and the report's plots.
    "swarm": ("rich", "psutil", "matplotlib"),
    # Benchmarks: their plots, and the CPU of the processes they measure.
    "bench": ("matplotlib", "psutil"),
    # The live web dashboard of `up --dashboard`.
    "dashboard": ("aiohttp",),
}


def require_extra(extra: str, command: str) -> None:
    """Raise `ConfigurationError` naming the install command if `extra`'s modules are missing."""
    missing = [m for m in EXTRAS[extra] if not _importable(m)]
    if missing:
        raise ConfigurationError(
            f"{command} needs {', '.join(missing)}: pip install 'sciot-mqtt[{extra}]'"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder refused it (a broken install): as good as missing
        return False
