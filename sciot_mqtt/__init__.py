"""sciot-mqtt: an MQTT-native edge service for split computing of TinyML models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sciot-mqtt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
