"""The project's exceptions: one base, a few subclasses named after what failed."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Reason codes, shared by exceptions and the `error` topic (see topics.md)."""

    MALFORMED = "malformed"  # not msgpack, not a map, or not valid UTF-8
    INVALID = "invalid"  # a field is missing, of the wrong type or out of range
    TOO_LARGE = "too_large"  # payload over the topic's size limit
    UNSUPPORTED_VERSION = "unsupported_version"  # protocol version the service does not speak
    INVALID_DEVICE_ID = "invalid_device_id"  # the id level of the topic is not a safe device id
    NO_MODEL = "no_model"  # none of the device's models is served here
    NOT_REGISTERED = "not_registered"  # inference from a device without a current birth
    WRONG_MODEL = "wrong_model"  # inference for a model other than the one assigned
    BAD_SPLIT = "bad_split"  # split point outside 0..N of the model
    TENSOR_MISMATCH = "tensor_mismatch"  # tensors differ from the manifest at that split
    OVERLOADED = "overloaded"  # the service's inference queue is full; run it locally
    DEVICE_LIMIT = "device_limit"  # the service holds as many devices as it may; run locally
    INTERNAL = "internal"  # the service failed on a valid message; it is logged


class SciotError(Exception):
    """Base of every error raised by sciot-mqtt."""


class ProtocolError(SciotError):
    """A message broke the wire contract; `code` goes out on the `error` topic."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason


class ConnectionLostError(SciotError):
    """The MQTT connection failed or dropped."""


class ConfigurationError(SciotError):
    """Settings that cannot work together; the message says what to change."""


class AccessDeniedError(ConnectionLostError):
    """The broker refused this account: a login it does not accept, or a subscription its
    ACLs forbid. Retrying cannot help, so the service and the device stop on it."""
