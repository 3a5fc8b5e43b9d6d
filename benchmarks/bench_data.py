"""How long the Shapes set takes to draw (median of several runs).

    python benchmarks/bench_data.py      # writes benchmarks/results/data_times.md
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nets.data import make_shapes

RESULTS = Path(__file__).resolve().parent / "results" / "data_times.md"
CASES = [(10_000, 32), (10_000, 16), (1_000, 64)]


def main(repeats: int = 5) -> None:
    lines = ["# Drawing the Shapes set", "",
             f"Median of {repeats} runs on {platform.machine()}, {os.cpu_count()} cores, "
             f"{torch.get_num_threads()} torch threads, torch {torch.__version__}.", "",
             "| images | size | seconds | images/s |", "|---|---|---|---|"]
    for n, size in CASES:
        make_shapes(64, image_size=size)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            make_shapes(n, image_size=size, seed=0)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        lines.append(f"| {n:,} | {size}×{size} | {t:.2f} | {n / t:,.0f} |")
        print(lines[-1], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
