"""The edge service: registry of devices, heartbeats, stats, over one MQTT connection."""

from sciot_mqtt.service.registry import DeviceRecord, Presence, Registry, Transition
from sciot_mqtt.service.service import Service

__all__ = ["DeviceRecord", "Presence", "Registry", "Service", "Transition"]
