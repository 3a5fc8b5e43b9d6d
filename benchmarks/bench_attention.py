"""Multi-head self-attention three ways: `nets.MultiHeadAttention`'s explicit path
(softmax(QKᵀ/√d)·V, weights materialised), its fused path (``F.scaled_dot_product_attention``)
and PyTorch's ``nn.MultiheadAttention`` — same weights, forward + backward, against sequence
length.

    python benchmarks/bench_attention.py            # writes benchmarks/results/attention_speed.md

Timed interleaved with ``nets.compare_latency`` (torch.utils.benchmark underneath), so drifts
in machine load hit all three alike; the ratio is the median of per-round ratios to
``nn.MultiheadAttention``. The explicit path also keeps the (B, h, L, L) weight tensor, whose
size is given (float32). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path

import torch
from torch import nn

import nets

RESULTS = Path(__file__).resolve().parent / "results" / "attention_speed.md"
BATCH, DIM, HEADS = 8, 128, 4
LENGTHS = (64, 128, 256, 512, 1024)


def steps(length: int):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
    ours = nets.MultiHeadAttention.from_torch(theirs)
    x = torch.randn(BATCH, length, DIM)

    def explicit() -> None:
        ours.zero_grad(set_to_none=True)
        out, _ = ours(x, x, x, need_weights=True)
        out.square().mean().backward()

    def fused() -> None:
        ours.zero_grad(set_to_none=True)
        out, _ = ours(x, x, x, need_weights=False)
        out.square().mean().backward()

    def torch_mha() -> None:
        theirs.zero_grad(set_to_none=True)
        out, _ = theirs(x, x, x, need_weights=False)
        out.square().mean().backward()

    return {"nn.MultiheadAttention": torch_mha, "nets, fused": fused, "nets, explicit": explicit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    rows = []
    for length in LENGTHS:
        result = nets.compare_latency(steps(length), rounds=args.rounds, grad=True,
                                      min_run_time=0.2, baseline="nn.MultiheadAttention")
        weights_mib = BATCH * HEADS * length * length * 4 / 2**20
        med, ratio = result.median, result.ratio
        rows.append((length, med["nn.MultiheadAttention"] * 1e3, med["nets, fused"] * 1e3,
                     med["nets, explicit"] * 1e3, ratio["nets, fused"], ratio["nets, explicit"],
                     weights_mib))
        print(f"L={length:5d}  torch {rows[-1][1]:8.2f} ms  fused {rows[-1][2]:8.2f} ms  "
              f"explicit {rows[-1][3]:8.2f} ms  weights {weights_mib:7.1f} MiB", flush=True)
    lines = [
        "# Attention: explicit vs fused vs `nn.MultiheadAttention`",
        "",
        f"`benchmarks/bench_attention.py`: self-attention, batch {BATCH}, embedding {DIM}, "
        f"{HEADS} heads, forward + backward, interleaved with `nets.compare_latency`, "
        f"{args.rounds} rounds; {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__.split('+')[0]}, "
        f"measured {dt.date.today().isoformat()}.",
        "",
        "| length L | `nn.MultiheadAttention` (ms) | nets fused (ms) | nets explicit (ms) "
        "| fused / torch | explicit / torch | explicit's weights (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.1f} |"
              for r in rows]
    lines += ["", "The explicit path materialises the (B, h, L, L) weights (last column, float32) "
              "and keeps them for the backward pass; the fused call does not return them."]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
