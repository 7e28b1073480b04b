"""Simulated device swarms: many full Python devices, a workload, churn, and a report."""

from sciot_mqtt.swarm.mix import Churn, DevicePlan, Mix, Workload, load_mix, plan_devices
from sciot_mqtt.swarm.worker import Row, SwarmWorker

__all__ = [
    "Churn",
    "DevicePlan",
    "Mix",
    "Row",
    "SwarmWorker",
    "Workload",
    "load_mix",
    "plan_devices",
]
