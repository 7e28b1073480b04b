"""The per-split kernel figures of docs/perf.md: each tail of a model with LiteRT's builtin
kernels (what the service runs) alone and per item in one batched invoke, and with the
XNNPACK delegate, with whether XNNPACK's outputs are bit-identical to the builtin kernels'.

    .venv/bin/python scripts/kernels_table.py [MODEL] [--inputs N] > table.md

Run it under the benchmark lock on a quiet machine; it prints a Markdown table and the
load average.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import SegmentRunner
from sciot_mqtt.models.batching import random_inputs
from sciot_mqtt.models.catalog import resolve_package


def p50_ms(fn: Callable[[], object], runs: int, per: int = 1) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000 / per)
    return float(np.percentile(samples, 50))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="fomo96")
    parser.add_argument("--inputs", type=int, default=32, help="images and random inputs each")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    package = resolve_package(args.model)
    builtin = SegmentRunner(package)
    xnnpack = SegmentRunner(package, default_delegates=True)
    images = synthetic_images(seed=21)
    rng = np.random.default_rng(21)
    lives = [{package.input.name: package.quantize_input(next(images))} for _ in range(args.inputs)]
    lives += [
        {t.name: a for t, a in zip(package.inputs, random_inputs(package, rng), strict=True)}
        for _ in range(args.inputs)
    ]
    print(f"load average at start: {os.getloadavg()}")
    print(
        "| split | builtin alone (ms) | per item, batch 4 / 8 / 16 (ms) "
        "| XNNPACK alone (ms) | XNNPACK bit-identical |"
    )
    print("|---|---|---|---|---|")
    for s in range(package.num_ops):
        identical = all(
            np.array_equal(xnnpack.run_tail(s, live), builtin.run_tail(s, live)) for live in lives
        )
        first = lives[0]
        alone = p50_ms(lambda: builtin.run_tail(s, first), args.runs)  # noqa: B023
        batched = [
            p50_ms(lambda b=b: builtin.run_tail_batch(s, lives[:b]), args.runs // 4, per=b)  # noqa: B023
            for b in (4, 8, 16)
        ]
        x = p50_ms(lambda: xnnpack.run_tail(s, first), args.runs)  # noqa: B023
        shown = " / ".join(f"{v:.3f}" for v in batched)
        print(f"| {s} | {alone:.3f} | {shown} | {x:.3f} | {'yes' if identical else 'no'} |")
        lives = [builtin.run_op(s, live)[0] for live in lives]  # the tensors live at s + 1
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
