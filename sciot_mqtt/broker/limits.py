"""The largest MQTT packet a broker takes, derived from the largest payload the service takes.

A packet is its payload plus a fixed header (at most 5 bytes), the topic (2 + at most ~90
bytes in this contract) and a packet id (2). `PACKET_HEADROOM` covers that with room to spare,
so a payload the service accepts always fits, and anything much larger is refused by the
broker before it is buffered (Mosquitto's `max_packet_size`, the embedded broker's check in
`amqtt_fixes`). The limit applies to every client, the service's own publishes included.
"""

from __future__ import annotations

PACKET_HEADROOM = 4096


def max_packet_size(max_payload: int) -> int:
    """The packet limit for a service that accepts payloads of up to `max_payload` bytes."""
    return max_payload + PACKET_HEADROOM
