"""Links: their profiles, and their emulation in process (a device delaying its own messages),
through a TCP proxy (any OS, unprivileged) or by kernel shaping in a network namespace
(Linux, root)."""

from sciot_mqtt.network.emulator import LinkEmulator, LinkStats
from sciot_mqtt.network.link import LINK_PROFILES, LinkProfile, LinkSchedule, load_link_profile
from sciot_mqtt.network.measure import DownlinkResponder, measure_link
from sciot_mqtt.network.netns import LinkShaping, NetnsLink, kernel_shaping_unavailable
from sciot_mqtt.network.proxy import LinkProxy, ProxyStats

__all__ = [
    "LINK_PROFILES",
    "DownlinkResponder",
    "LinkEmulator",
    "LinkProfile",
    "LinkProxy",
    "LinkSchedule",
    "LinkShaping",
    "LinkStats",
    "NetnsLink",
    "ProxyStats",
    "kernel_shaping_unavailable",
    "load_link_profile",
    "measure_link",
]
