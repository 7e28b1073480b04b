"""Mix files: profiles in proportions, workload, churn; clear errors for bad ones."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.swarm import Workload, load_mix, plan_devices
from sciot_mqtt.swarm.worker import arrivals


def test_toml_mix_is_read_and_apportioned(tmp_path: Path) -> None:
    path = tmp_path / "mix.toml"
    path.write_text(
        'compute = { host = 3, "esp32s3:0.05" = 1 }\n'
        "links = { wifi = 0.5, lte = 0.5 }\n"
        "[workload]\narrivals = 'poisson'\nrate_hz = 2\n"
        "[churn]\ncrash_per_min = 0.1\n"
    )
    mix = load_mix(path)
    assert mix.workload.arrivals == "poisson" and mix.workload.rate_hz == 2
    assert mix.churn.crash_per_min == 0.1
    plans = plan_devices(mix, 40)
    assert Counter(p.compute for p in plans) == {"host": 30, "esp32s3:0.05": 10}
    assert Counter(p.link for p in plans) == {"wifi": 20, "lte": 20}
    # Every pairing occurs, and any prefix (the first devices to join) is mixed.
    assert len({(p.compute, p.link) for p in plans}) == 4
    assert {p.compute for p in plans[:4]} == {"host", "esp32s3:0.05"}
    assert len({p.id for p in plans}) == 40
    joins = [p.join_at_s for p in plans]
    assert joins == sorted(joins) and joins[0] == 0 and joins[-1] < mix.churn.join_over_s


def test_json_mix_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mix.json"
    path.write_text('{"links": {"5g": 1}, "split": 6}')
    mix = load_mix(path)
    assert mix.links == {"5g": 1} and mix.split == 6
    assert sum(load_mix(None).compute.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"links": {"wifi": -1}}', "shares must be >= 0"),
        ('{"links": {}}', "at least one profile"),
        ('{"workload": {"rate": 2}}', "rate"),  # a typo is an error, not ignored
        ('{"workload": {"arrivals": "sometimes"}}', "arrivals"),
        ("[1, 2]", "table/object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_mix_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mix.json"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_mix(path)


def test_missing_mix_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the mix"):
        load_mix(tmp_path / "nope.toml")


@pytest.mark.parametrize("kind", ["fixed", "poisson", "burst"])
def test_arrivals_have_the_mean_rate(kind: str) -> None:
    workload = Workload(arrivals=kind, rate_hz=4.0, burst_size=5)  # type: ignore[arg-type]
    times = list(islice(arrivals(workload, random.Random(1), 100.0), 4000))
    assert times == sorted(times) and times[0] >= 100.0
    rate = len(times) / (times[-1] - times[0])
    assert rate == pytest.approx(4.0, rel=0.1)
    if kind == "burst":
        assert Counter(times).most_common(1)[0][1] == 5
