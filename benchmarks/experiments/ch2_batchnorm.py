"""Chapter 2, Batch Normalization: the seed spreads and learning-rate checks behind its experiments.

Part ``a`` (experiment a, what BN does to training): the CIFAR-style ResNet-20 at width 8 on
16×16 Shapes without clutter or noise (8,000 standardised training images), 200 SGD steps of
batch 128 (momentum 0.9, weight decay 5e-4, constant rate then a linear decay to 0 over the
last 30 %), exactly the chapter's recipe, for three nets:

* ``BN``        the default, ``nn.BatchNorm2d`` after every convolution;
* ``none``      the same net with ``norm_layer=no_norm`` (``nn.Identity`` in every BN slot);
* ``SkipInit``  the BN-free net whose every residual branch ends in a learnable scalar that
                starts at 0 (De & Smith 2020): at initialisation each block is the identity;

with seeds 0, 1, 2 at the chapter's rates and the ones either side: BN at 0.02 and 0.1, the
BN-free net at 0.02, 0.1 and 0.3, SkipInit at 0.1, 0.3 and 1.0; and one variant at 0.1,
``BN, no decay on γ/β`` (the BN net with weight decay only on the conv and linear weights).
Added later, because BN's and SkipInit's best rates sat at an edge of their grids: BN at 0.3
and SkipInit at 0.03 and 0.01, three seeds each (``a --resume`` runs only what is missing).

Part ``b`` (experiment b, small batches): ResNet-8 at width 16 with BN, GroupNorm (8 groups)
or LayerNorm (``GroupNorm(1, C)``), trained with batches of 32 and of 2 for the same number of
images (one pass over the 8,000), the rate scaled with the batch size (0.2 × B / 128), seeds
0, 1, 2; evaluated in eval mode on the 1,000 validation images. At batch 2, rates of ½× and
2× the scaled one (seed 0) check that the linear scaling rule is not what handicaps a norm.
The runs go in that order (BN and GroupNorm, the rate checks, then LayerNorm); ``--resume``
continues either part from its stored results.

    .venv/bin/python benchmarks/experiments/ch2_batchnorm.py a      # ~12 min on one CPU thread
    .venv/bin/python benchmarks/experiments/ch2_batchnorm.py a --resume   # only the missing runs
    .venv/bin/python benchmarks/experiments/ch2_batchnorm.py b      # ~15 min

Writes ``results/ch2_batchnorm_<part>.json`` (one record per run, saved as it goes),
``results/ch2_batchnorm.md`` (tables) and ``results/ch2_batchnorm.png`` (per-seed strip plots).
Runs at ``NETS_SCALE=1`` whatever the environment says.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ["NETS_SCALE"] = "1"

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import nets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
LRS_A = [0.01, 0.02, 0.03, 0.1, 0.3, 1.0]
BATCHES_B = [32, 2]


class SkipInit(nn.Module):
    """A learnable scalar that multiplies the residual branch, starting at 0 (arXiv:2002.10444)."""

    def __init__(self, channels: int = 0) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x


def no_norm(channels: int) -> nn.Module:
    return nn.Identity()


NETS_A = {
    "BN": lambda: nets.cifar_resnet(20, width=8),
    "none": lambda: nets.cifar_resnet(20, width=8, norm_layer=no_norm),
    "SkipInit": lambda: nets.cifar_resnet(20, width=8, norm_layer=no_norm, attn_layer=SkipInit),
    "BN, no decay on γ/β": lambda: nets.cifar_resnet(20, width=8),
}
NORMS_B = {
    "BN": None,
    "GroupNorm": lambda c: nn.GroupNorm(8, c),
    "LayerNorm": lambda c: nn.GroupNorm(1, c),
}


def data():
    train = nets.Shapes(8000, image_size=16, split="train", seed=0, noise=0, clutter=0)
    val = nets.Shapes(1000, image_size=16, split="val", seed=0, noise=0, clutter=0)
    mean = train.images.mean((0, 2, 3), keepdim=True)
    std = train.images.std((0, 2, 3), keepdim=True)
    for dataset in (train, val):
        dataset.images = (dataset.images - mean) / std
    return train, val


def param_groups(model: nn.Module, decay_norms: bool, weight_decay: float = 5e-4):
    """All parameters with weight decay, or the norms' γ/β (1-d parameters) without it."""
    if decay_norms:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    norm_params = [p for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))
                   for p in m.parameters(recurse=False)]
    ids = {id(p) for p in norm_params}
    return [{"params": [p for p in model.parameters() if id(p) not in ids], "weight_decay": weight_decay},
            {"params": norm_params, "weight_decay": 0.0}]


def train(build, lr: float, steps: int, train_set, batch_size: int = 128, seed: int = 0,
          decay_norms: bool = True):
    """The chapter's recipe: SGD momentum 0.9, constant rate then linear decay over the last 30 %."""
    generator = nets.seed_everything(seed)
    model = build()
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True)
    optimizer = torch.optim.SGD(param_groups(model, decay_norms), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (steps - step) / (0.3 * steps)))
    history = nets.fit(model, loader, epochs=-(-steps // len(loader)), max_steps=steps,
                       optimizer=optimizer, scheduler=schedule, device=CPU, quiet=True)
    return model, history


def part_a(train_set, val_set, record):
    val_loader = DataLoader(val_set, batch_size=500)
    jobs = [("BN", 0.02), ("BN", 0.1), ("none", 0.02), ("none", 0.1), ("none", 0.3),
            ("SkipInit", 0.1), ("SkipInit", 0.3), ("SkipInit", 1.0), ("BN, no decay on γ/β", 0.1),
            # added after a referee's reading: the best rates of BN (0.1) and SkipInit (0.1) sat at
            # an edge of their grids, so each gets the rates beyond that edge
            ("BN", 0.3), ("SkipInit", 0.03), ("SkipInit", 0.01)]
    done = {(r["net"], r["lr"], r["seed"]) for r in record["runs"]}
    for name, lr in jobs:
        build = NETS_A[name]
        for seed in SEEDS:
            if (name, lr, seed) not in done:       # resumed: already in the stored results
                start = time.perf_counter()
                model, h = train(build, lr, 200, train_set, seed=seed,
                                 decay_norms=not name.startswith("BN, no decay"))
                val = (float("nan") if h.diverged
                       else nets.evaluate(model, val_loader, device=CPU)["metric"])
                gammas = [m.weight.detach().abs().mean().item() for m in model.modules()
                          if isinstance(m, nn.BatchNorm2d)]
                run = {"net": name, "lr": lr, "seed": seed, "val_acc": val,
                       "train_acc_last20": float(np.mean(h["metric"][-20:])) if not h.diverged else float("nan"),
                       "first_loss": h["loss"][0], "max_loss": max(h["loss"]),
                       "diverged_at": h.diverged_at, "mean_abs_gamma": float(np.mean(gammas)) if gammas else None,
                       "seconds": time.perf_counter() - start}
                record["runs"].append(run)
                print(json.dumps(run), flush=True)
                yield


def part_b(train_set, val_set, record):
    val_loader = DataLoader(val_set, batch_size=500)
    jobs = [(norm, b, 1.0, seed) for norm in ("BN", "GroupNorm") for b in BATCHES_B for seed in SEEDS]
    jobs += [(norm, 2, factor, 0) for norm in ("BN", "GroupNorm") for factor in (0.5, 2.0)]
    jobs += [("LayerNorm", b, 1.0, seed) for b in BATCHES_B for seed in SEEDS]
    done = {(r["norm"], r["batch"], r["lr_factor"], r["seed"]) for r in record["runs"]}
    for norm, batch, factor, seed in jobs:
        if (norm, batch, factor, seed) in done:     # resumed: already in the stored results
            continue
        start = time.perf_counter()
        lr = 0.2 * batch / 128 * factor
        model, h = train(lambda: nets.cifar_resnet(8, width=16, norm_layer=NORMS_B[norm]), lr,
                         len(train_set) // batch, train_set, batch_size=batch, seed=seed)
        ev = (nets.evaluate(model, val_loader, device=CPU) if not h.diverged
              else {"metric": float("nan"), "loss": float("nan")})
        run = {"norm": norm, "batch": batch, "lr_factor": factor, "lr": lr, "seed": seed,
               "val_acc": ev["metric"], "val_loss": ev["loss"], "diverged_at": h.diverged_at,
               "seconds": time.perf_counter() - start}
        record["runs"].append(run)
        print(json.dumps(run), flush=True)
        yield


def main(part: str) -> None:
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ch2_batchnorm_{part}.json"
    train_set, val_set = data()
    record = {"part": part, "torch": torch.__version__, "machine": platform.machine(), "threads": 1,
              "seeds": SEEDS, "runs": []}
    if out.exists() and "--resume" in sys.argv:
        record = json.loads(out.read_text())
    start = time.perf_counter()
    for _ in (part_a if part == "a" else part_b)(train_set, val_set, record):
        out.write_text(json.dumps(record, indent=1))
    record["total_seconds"] = record.get("total_seconds", 0) + time.perf_counter() - start
    out.write_text(json.dumps(record, indent=1))


def report() -> None:
    """Tables and strip plots from whatever parts have been run."""
    lines = ["# Chapter 2: seed spreads and learning-rate checks\n",
             "Generated by `benchmarks/experiments/ch2_batchnorm.py` (one CPU thread).\n"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    path_a, path_b = RESULTS / "ch2_batchnorm_a.json", RESULTS / "ch2_batchnorm_b.json"
    if path_a.exists():
        rec = json.loads(path_a.read_text())
        runs = rec["runs"]
        lines += ["## Part a: ResNet-20 (width 8), 200 steps; validation accuracy per seed\n",
                  "| net | lr | val acc per seed | first loss (seed 0) | diverged at step |", "|---|---|---|---|---|"]
        labels = []
        for name in NETS_A:
            for lr in LRS_A:
                sel = [r for r in runs if r["net"] == name and r["lr"] == lr]
                if not sel:
                    continue
                lines.append(f"| {name} | {lr:g} | " + ", ".join(f"{r['val_acc']:.3f}" for r in sel)
                             + f" | {sel[0]['first_loss']:.2f} | "
                             + (", ".join(str(r["diverged_at"]) for r in sel if r["diverged_at"]) or "no")
                             + " |")
                x = len(labels)
                offsets = x + np.linspace(-0.12, 0.12, len(sel))
                for offset, r in zip(offsets, sel):
                    diverged = bool(r["diverged_at"])
                    axes[0].scatter([offset], [0.0 if diverged else r["val_acc"]], s=14,
                                    color=f"C{list(NETS_A).index(name)}", marker="x" if diverged else "o")
                labels.append(f"{name}\n{lr:g}")
        axes[0].set_xticks(range(len(labels)), labels, fontsize=6, rotation=90)
        axes[0].set_ylabel("validation accuracy (x: diverged, drawn at 0)")
        axes[0].set_title("experiment a: net and peak learning rate")
    if path_b.exists():
        rec = json.loads(path_b.read_text())
        runs = rec["runs"]
        lines += ["", "## Part b: ResNet-8 (width 16), one pass over 8,000 images; eval-mode validation accuracy\n",
                  "| norm | batch | lr factor | val acc per seed | val loss per seed |", "|---|---|---|---|---|"]
        labels = []
        for norm in NORMS_B:
            for batch in BATCHES_B:
                for factor in (0.5, 1.0, 2.0):
                    sel = [r for r in runs if r["norm"] == norm and r["batch"] == batch and r["lr_factor"] == factor]
                    if not sel:
                        continue
                    lines.append(f"| {norm} | {batch} | {factor:g} | " + ", ".join(f"{r['val_acc']:.3f}" for r in sel)
                                 + " | " + ", ".join(f"{r['val_loss']:.2f}" for r in sel) + " |")
                    if factor == 1.0:
                        x = len(labels)
                        vals = [r["val_acc"] for r in sel]
                        axes[1].scatter(x + np.linspace(-0.12, 0.12, len(vals)), vals, s=14,
                                        color=f"C{list(NORMS_B).index(norm)}")
                        labels.append(f"{norm}\nbatch {batch}")
        axes[1].set_xticks(range(len(labels)), labels, fontsize=7)
        axes[1].set_ylabel("validation accuracy, eval mode")
        axes[1].set_title("experiment b: norm and batch size, equal images seen")
    for ax in axes:
        ax.axhline(0.1, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "ch2_batchnorm.png", dpi=110)
    (RESULTS / "ch2_batchnorm.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("a", "b", "report"):
        sys.exit("usage: ch2_batchnorm.py a | b [--resume] | report")
    if sys.argv[1] == "report":
        report()
    else:
        main(sys.argv[1])
        report()
