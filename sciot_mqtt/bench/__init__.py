"""Benchmarks: commands that print and save JSON (and PNG plots), with the machine described."""

from sciot_mqtt.bench.machine import describe_machine

__all__ = ["describe_machine"]
