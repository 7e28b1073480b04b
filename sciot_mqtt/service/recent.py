"""Recent `infer` requests of one device, so a QoS 1 redelivery is answered, never run twice.

MQTT QoS 1 is at-least-once: a device (or the broker) may deliver the same `infer` again,
with the same session and `seq`. The service keeps, per device, the last few requests it
accepted, keyed by `seq` and tagged with the session and a digest of the payload (topics.md,
"Duplicates"). Pure logic, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from sciot_mqtt.protocol import InferResult

WINDOW = 32
"""Requests remembered per device; far below 2^31, so `seq` wrapping cannot alias."""


def digest(payload: bytes) -> int:
    """Python's own hash of the payload: SipHash, keyed at random per process, so no client
    can craft two payloads that collide here, and the entries never leave the process. It
    takes 2 us for a 7 kB tensor and keeps the GIL; BLAKE2b took 16 us and SHA-256 6 us, and
    both release and retake the GIL, which the tail workers contend for."""
    return hash(payload)


class Seen(Enum):
    NEW = "new"  # not among the recent requests: run it
    RUNNING = "running"  # the same request is being computed: its one answer is on the way
    ANSWERED = "answered"  # the same request was answered: send that answer again
    CONFLICT = "conflict"  # same session and seq, other content: a device bug, rejected


@dataclass
class _Entry:
    session: int
    digest: int
    answer: InferResult | None = None  # None while running


class RecentRequests:
    """The last `WINDOW` accepted requests of one device and their answers."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._entries: OrderedDict[int, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, session: int, seq: int, payload_digest: int) -> Seen:
        entry = self._entries.get(seq)
        if entry is None or entry.session != session:
            return Seen.NEW
        if entry.digest != payload_digest:
            return Seen.CONFLICT
        return Seen.RUNNING if entry.answer is None else Seen.ANSWERED

    def answer_of(self, seq: int) -> InferResult | None:
        entry = self._entries.get(seq)
        return entry.answer if entry is not None else None

    def start(self, session: int, seq: int, payload_digest: int) -> None:
        """Remember an accepted request before it runs (a redelivery meanwhile is dropped)."""
        self._entries.pop(seq, None)
        self._entries[seq] = _Entry(session, payload_digest)
        while len(self._entries) > self.window:
            self._entries.popitem(last=False)

    def finish(self, session: int, seq: int, answer: InferResult | None) -> None:
        """Keep the answer for redeliveries; None forgets the request (it may be retried)."""
        entry = self._entries.get(seq)
        if entry is None or entry.session != session:
            return
        if answer is None:
            del self._entries[seq]
        else:
            entry.answer = answer
