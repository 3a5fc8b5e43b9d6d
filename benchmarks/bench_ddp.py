"""What the DDP path costs on CPUs: 2 processes (1 thread each) against 1 process (2 threads)
for the same global batches.

    python benchmarks/bench_ddp.py            # writes benchmarks/results/ddp_overhead.md

Both train ResNet-20 (width 8) on Shapes 16×16 with chapter 1's recipe through
``python -m nets.run degradation`` for the same number of steps of the same global batch
(128); the time is the training time the runner records (``nets.fit``'s, start-up excluded),
best of ``--repeats``. On 2 cores the two processes share the work of each batch but add a
gradient all-reduce (gloo) and per-step metric reductions. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ddp_overhead.md"


def one_run(processes: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        threads = 2 // processes
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        env.pop("WORLD_SIZE", None)
        args = ["-m", "nets.run", "degradation", "--nets", "ResNet-20", "--steps", str(steps),
                "--batch-size", "128", "--device", "cpu", "--quiet", "--out", out]
        launcher = ([sys.executable] if processes == 1 else
                    [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={processes}"])
        subprocess.run(launcher + args, env=env, check=True, capture_output=True, timeout=900)
        [record] = [json.loads(line) for line in Path(out, "degradation.jsonl").read_text().splitlines()]
        assert record["processes"] == processes
        return record["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    best = {}
    for processes in (1, 2):
        times = [one_run(processes, args.steps) for _ in range(args.repeats)]
        best[processes] = min(times)
        print(f"{processes} process(es): {[f'{t:.1f}' for t in times]} s", flush=True)
    lines = [
        "# DDP on CPUs: 2 processes against 1, same global batches",
        "",
        f"`benchmarks/bench_ddp.py`: ResNet-20 (width 8), Shapes 16×16, global batch 128, "
        f"{args.steps} steps of chapter 1's recipe via `python -m nets.run degradation`; "
        f"training time recorded by the runner, best of {args.repeats}; {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__.split('+')[0]}, measured "
        f"{dt.date.today().isoformat()}.",
        "",
        "| processes × threads | seconds | ms per step | relative |",
        "|---|---:|---:|---:|",
        f"| 1 × 2 | {best[1]:.1f} | {best[1] / args.steps * 1e3:.0f} | 1.00 |",
        f"| 2 × 1 (gloo, DDP) | {best[2]:.1f} | {best[2] / args.steps * 1e3:.0f} | {best[2] / best[1]:.2f} |",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
