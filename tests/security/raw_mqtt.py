"""MQTT 3.1.1 packets written byte by byte, for attacks no well-behaved client library sends."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from sciot_mqtt.transport import BrokerAddress

REFUSED = -1  # the broker closed the connection without a CONNACK


def _string(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    clean_session: bool = True,
    will: Will | None = None,
    keepalive: int = 30,
) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = _string(client_id.encode())
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _string(will.topic.encode()) + _string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode())
    if password is not None:
        flags |= 0x40
        payload += _string(password.encode())
    body = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return bytes([0x10]) + remaining_length(len(body)) + body


async def open_connection(
    broker: BrokerAddress, packet: bytes
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a CONNECT; the CONNACK return code (0: accepted) or REFUSED, and the stream."""
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    writer.write(packet)
    await writer.drain()
    try:
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        writer.transport.abort()
        return REFUSED, reader, writer
    assert connack[0] == 0x20, connack
    return connack[3], reader, writer


async def connect_once(broker: BrokerAddress, packet: bytes) -> int:
    """Send a CONNECT, read the CONNACK, and drop the connection at once."""
    code, _, writer = await open_connection(broker, packet)
    writer.transport.abort()
    return code


def publish_header(topic: str, payload_len: int) -> bytes:
    """A QoS 0 PUBLISH up to its payload, which the caller streams."""
    variable = _string(topic.encode())
    return bytes([0x30]) + remaining_length(len(variable) + payload_len) + variable
