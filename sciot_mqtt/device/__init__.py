"""The Python reference device (the firmware in firmware-bridge/ follows the same contract)."""

from sciot_mqtt.device.device import Device, DeviceSummary

__all__ = ["Device", "DeviceSummary"]
