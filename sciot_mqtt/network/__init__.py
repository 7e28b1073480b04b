"""Real-socket link emulation: a TCP proxy (any OS, unprivileged) and kernel shaping in a
network namespace (Linux, root)."""

from sciot_mqtt.network.measure import DownlinkResponder, measure_link
from sciot_mqtt.network.netns import LinkShaping, NetnsLink, kernel_shaping_unavailable
from sciot_mqtt.network.proxy import LinkProxy, ProxyStats

__all__ = [
    "DownlinkResponder",
    "LinkProxy",
    "LinkShaping",
    "NetnsLink",
    "ProxyStats",
    "kernel_shaping_unavailable",
    "measure_link",
]
