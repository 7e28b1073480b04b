"""What a Python device pretends to be: the link it sits on and the chip it computes on."""

from __future__ import annotations

from dataclasses import dataclass, field

from sciot_mqtt.device.compute import EmulatedChip
from sciot_mqtt.network.emulator import LinkEmulator
from sciot_mqtt.settings import DeviceSettings


@dataclass(frozen=True, slots=True)
class Emulation:
    """The emulated link and chip handed to a `Device`; by default neither delays anything."""

    link: LinkEmulator = field(default_factory=lambda: LinkEmulator("loopback"))
    chip: EmulatedChip = field(default_factory=EmulatedChip)

    @classmethod
    def from_settings(cls, settings: DeviceSettings) -> Emulation:
        """As `--network`, `--profile` and `--emulation-seed` say."""
        seed = settings.emulation_seed
        return cls(
            LinkEmulator(settings.network, seed=seed), EmulatedChip(settings.profile, seed=seed)
        )
