"""The swarm's live view and status lines say what they show (issue 17's newcomer notes)."""

from __future__ import annotations

from rich.console import Console

from sciot_mqtt.swarm.live import LiveView, SwarmTotals
from sciot_mqtt.swarm.worker import _kind


def _totals() -> SwarmTotals:
    totals = SwarmTotals(devices=20, duration=None)
    totals.add(
        0,
        {
            "states": {"offload": 20},
            "started": 100,
            "recorded": 100,
            "latencies": [10.0, 12.0, 30.0],
            "splits": {"0": 46, "25": 54},
            "paths": {"offload": 46, "local": 54},
            "sent_bytes": 1000,
            "joins": 20,
            "leaves": 0,
            "crashes": 0,
        },
    )
    return totals


def test_the_status_line_is_plain_words() -> None:
    line = _totals().line()
    assert "devices (mode now): offload 20" in line
    assert "{" not in line and "'" not in line


def test_the_live_view_keeps_mode_and_where_results_came_from_apart() -> None:
    view = LiveView(_totals())
    console = Console(width=120, record=True)
    console.print(view._render())
    text = console.export_text()
    assert "devices (mode now)" in text and "20: offload 20" in text
    assert "results (computed where)" in text and "offloaded 46, local 54" in text
    assert "0 = send the raw input, N = all on the device" in text


def test_swarm_devices_announce_their_chip() -> None:
    assert _kind("esp32s3:0.05") == "esp32s3"
    assert _kind("host") == "host"
    assert _kind("/profiles/my-chip.json") == "my-chip"
