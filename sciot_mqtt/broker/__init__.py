"""Brokers the project starts itself: amqtt in-process, or Mosquitto as a child process."""

from sciot_mqtt.broker._ready import until_accepting
from sciot_mqtt.broker.embedded import EmbeddedBroker
from sciot_mqtt.broker.mosquitto import MosquittoBroker, free_port

__all__ = ["EmbeddedBroker", "MosquittoBroker", "free_port", "until_accepting"]
