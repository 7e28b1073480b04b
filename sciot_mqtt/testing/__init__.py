"""Testing kit: fixtures (see `sciot_mqtt.testing.plugin`) and an observer client."""

from sciot_mqtt.testing.probe import MqttProbe, topic_matches

__all__ = ["MqttProbe", "topic_matches"]
