"""Training-step speed of each `nets` model against its torchvision (or PyTorch) twin.

    python benchmarks/bench_models.py                 # all pairs, writes benchmarks/results/model_speed.md
    python benchmarks/bench_models.py --quick         # fewer repeats, smaller inputs
    python benchmarks/bench_models.py resnet50 mha    # only some pairs

A training step here is forward + cross-entropy + backward on one batch (no optimizer, so
only the model's own cost is timed). Both models of a pair have the same weights. The two
are timed *interleaved* by ``nets.compare_latency`` (torch.utils.benchmark underneath) —
ours, theirs, theirs, ours, ... — so drifts in machine load hit both alike; the median per
model and the median of the per-round ratios ours / theirs are reported. The
goal is a ratio of at most 1.05 for every pair: our models run the same operations and
should only pay a few Python calls (the input check, the empty attention slot).
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

import nets

RESULTS = Path(__file__).resolve().parent / "results" / "model_speed.md"

# name -> (ours, theirs, input shape (N, C, H, W))
IMAGE_PAIRS: Dict[str, Tuple[Callable[[], nn.Module], Callable[[], nn.Module], Tuple[int, ...]]] = {
    "resnet18": (nets.resnet18, tvm.resnet18, (8, 3, 160, 160)),
    "resnet34": (nets.resnet34, tvm.resnet34, (8, 3, 160, 160)),
    "resnet50": (nets.resnet50, tvm.resnet50, (8, 3, 160, 160)),
    "resnet101": (nets.resnet101, tvm.resnet101, (4, 3, 160, 160)),
    "resnet152": (nets.resnet152, tvm.resnet152, (4, 3, 160, 160)),
    "resnext50_32x4d": (nets.resnext50_32x4d, tvm.resnext50_32x4d, (8, 3, 160, 160)),
    "resnext101_32x8d": (nets.resnext101_32x8d, tvm.resnext101_32x8d, (4, 3, 160, 160)),
    "wide_resnet50_2": (nets.wide_resnet50_2, tvm.wide_resnet50_2, (4, 3, 160, 160)),
    "mobilenet_v2": (nets.mobilenet_v2, tvm.mobilenet_v2, (16, 3, 160, 160)),
    "mobilenet_v3_large": (nets.mobilenet_v3_large, tvm.mobilenet_v3_large, (16, 3, 160, 160)),
    "mobilenet_v3_small": (nets.mobilenet_v3_small, tvm.mobilenet_v3_small, (16, 3, 160, 160)),
    "shufflenet_v2_x0_5": (nets.shufflenet_v2_x0_5, tvm.shufflenet_v2_x0_5, (16, 3, 160, 160)),
    "shufflenet_v2_x1_0": (nets.shufflenet_v2_x1_0, tvm.shufflenet_v2_x1_0, (16, 3, 160, 160)),
    "shufflenet_v2_x1_5": (nets.shufflenet_v2_x1_5, tvm.shufflenet_v2_x1_5, (16, 3, 160, 160)),
    "shufflenet_v2_x2_0": (nets.shufflenet_v2_x2_0, tvm.shufflenet_v2_x2_0, (16, 3, 160, 160)),
}
MHA_SHAPE = (16, 128, 256, 8)  # batch, sequence length, embed_dim, heads


def _image_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    return step


def _mha_steps() -> Tuple[Callable[[], None], Callable[[], None], str]:
    batch, length, dim, heads = MHA_SHAPE
    theirs = nn.MultiheadAttention(dim, heads, batch_first=True)
    ours = nets.MultiHeadAttention.from_torch(theirs)
    x = torch.randn(batch, length, dim)

    def step_ours() -> None:
        ours.zero_grad(set_to_none=True)
        out, _ = ours(x, x, x, need_weights=False)   # the fused path
        out.square().mean().backward()

    def step_theirs() -> None:
        theirs.zero_grad(set_to_none=True)
        out, _ = theirs(x, x, x, need_weights=False)
        out.square().mean().backward()

    return step_ours, step_theirs, f"({batch}, {length}, {dim}), {heads} heads"


def measure(step_ours, step_theirs, repeats: int, threads=None) -> Tuple[float, float, float]:
    """Median seconds per step of each, and the median per-round ratio ours / theirs."""
    result = nets.compare_latency({"ours": step_ours, "theirs": step_theirs}, baseline="theirs",
                                  rounds=repeats, grad=True, threads=threads, min_run_time=0.2)
    return result.median["ours"], result.median["theirs"], result.ratio["ours"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"pairs to run: {', '.join(IMAGE_PAIRS)}, mha")
    parser.add_argument("--repeats", type=int, default=21)   # 9 left ±7 % noise here
    parser.add_argument("--quick", action="store_true", help="3 repeats, batch 2 at 96×96")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    names = args.names or [*IMAGE_PAIRS, "mha"]
    unknown = set(names) - set(IMAGE_PAIRS) - {"mha"}
    if unknown:
        parser.error(f"unknown pairs {sorted(unknown)}")
    repeats = 3 if args.quick else args.repeats

    torch.manual_seed(0)
    rows = []
    for name in names:
        if name == "mha":
            step_ours, step_theirs, shape = _mha_steps()
            label = "MultiHeadAttention (fused) vs nn.MultiheadAttention"
        else:
            build_ours, build_theirs, shape = IMAGE_PAIRS[name]
            if args.quick:
                shape = (2, 3, 96, 96)
            theirs = build_theirs()
            ours = build_ours()
            ours.load_state_dict(theirs.state_dict())
            ours.train(), theirs.train()
            x, y = torch.randn(shape), torch.randint(0, 1000, (shape[0],))
            step_ours, step_theirs = _image_step(ours, x, y), _image_step(theirs, x, y)
            label = name
        t_ours, t_theirs, ratio = measure(step_ours, step_theirs, repeats, args.threads)
        rows.append((label, str(shape), t_ours * 1e3, t_theirs * 1e3, ratio))
        print(f"{label:<55} {t_ours * 1e3:9.1f} ms {t_theirs * 1e3:9.1f} ms  ratio {ratio:.3f}",
              flush=True)

    worst = max(r[4] for r in rows)
    lines = [
        "# Training-step speed: `nets` vs torchvision / PyTorch",
        "",
        f"`benchmarks/bench_models.py{' --quick' if args.quick else ''}`: forward + backward, interleaved "
        f"with `nets.compare_latency`, {repeats} rounds (ratio: median of the per-round ratios); "
        f"{platform.machine()}, {os.cpu_count()} cores, {args.threads or torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}.",
        "",
        "| pair | input | ours (ms) | theirs (ms) | ours / theirs |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.3f} |" for r in rows]
    lines += ["", f"Worst ratio: {worst:.3f} (goal ≤ 1.05)."]
    if not args.names:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join(lines) + "\n")
    print(f"worst ratio {worst:.3f}")


if __name__ == "__main__":
    main()
