"""Chapter 1's degradation experiment as a learning-rate sweep over seeds.

Every network of the chapter's comparison (plain-14, plain-26, ResNet-14, ResNet-26 and the
pre-activation ResNet-26 built in the chapter) is trained with the chapter's exact setup in two
stages: first with seed 0 at every peak learning rate of LRS, extended by doubling the rate
while the best seed-0 rate is the largest one tried (so no net's best rate sits at the edge of
its grid); then with seeds 1 and 2 at the best seed-0 rate and its neighbours in that net's
grid (a coarse-to-fine sweep that fits a CPU evening); then both neighbours of the best
three-seed rate get all three seeds too (doubling past the grid's edge if the best is the
largest rate tried), until the best rate has neighbours on both sides run with all three.
A net's best rate is the one with the lowest mean final training error over seeds 0, 1 and 2
(among the rates that have all three). Finally the four nets the chapter compares run with
seeds 3 to 7 at that rate: eight runs per net, five of them fresh draws that played no part in
choosing the rate, which give the spread the chapter's asserts are sized against. The chapter
trains only each net at its rate, and plots these stored results.

Setup (identical to the chapter's ``train``): Shapes 16×16 without clutter or noise, 6,656
training images (52 batches of 128, 10 epochs), 1,000 validation images; width 8; SGD with
momentum 0.9 (constant: OneCycleLR's momentum cycling is switched off) and weight decay
5e-4; one-cycle schedule, 15 % warm-up to the peak rate, 520 steps; residual nets start with
the last BN (post-activation) or the last conv (pre-activation) of every block at zero.

Run from the repository root (one thread; results appended as they come, so an interrupted
run resumes where it stopped):

    nice -n 5 .venv/bin/python benchmarks/experiments/ch1_degradation_sweep.py
    .venv/bin/python benchmarks/experiments/ch1_degradation_sweep.py --report   # tables + plots only

Each run also records the mean std of its blocks' 3×3 layer responses after training (the
paper's Fig. 7 measure; runs from before this was added have none).

Writes benchmarks/experiments/results/ch1_degradation_sweep.{jsonl,csv,md} and
ch1_degradation_sweep_lr.png (error vs peak rate) and ch1_degradation_sweep_seeds.png
(strip plot of per-seed final errors at each net's best rate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import nets
from nets.recipes import one_cycle_run
from nets.cifar_resnet import make_shortcut
from nets.resnet import init_resnet_weights

RESULTS = Path(__file__).resolve().parent / "results"
STEM = "ch1_degradation_sweep"
NETS = ("plain-14", "plain-26", "ResNet-14", "ResNet-26", "preact-26")
LRS = (0.02, 0.05, 0.1, 0.2, 0.4)
SEEDS = (0, 1, 2)                 # choose the rate
SPREAD_SEEDS = tuple(range(3, 8))    # then measure the spread at it, for the compared nets
IMAGE_SIZE, WIDTH, BATCH, STEPS, EPOCHS = 16, 8, 128, 520, 10
CHANCE = 0.9


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016b, arXiv:1603.05027):
    y = shortcut(x) + conv2(relu(bn2(conv1(relu(bn1(x)))))). Nothing follows the addition."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut = make_shortcut("A", in_channels, out_channels, stride) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return self.shortcut(x) + out


def preact_resnet(depth: int, width: int = 8, num_classes: int = 10) -> nn.Sequential:
    """The CIFAR layout of nets.cifar_resnet with pre-activation blocks; one BN + ReLU after
    the last block (the blocks leave their output un-normalised); last conv of every block 0."""
    n = (depth - 2) // 6
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False)]
    channels = width
    for stage, out in enumerate((width, 2 * width, 4 * width)):
        for i in range(n):
            layers.append(PreActBlock(channels, out, 2 if (i == 0 and stage > 0) else 1))
            channels = out
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(channels, num_classes)]
    model = nn.Sequential(*layers)
    init_resnet_weights(model)
    for m in model.modules():
        if isinstance(m, PreActBlock):
            nn.init.zeros_(m.conv2.weight)
    return model


def build(name: str) -> nn.Module:
    if name.startswith("preact"):
        return preact_resnet(int(name.split("-")[1]), width=WIDTH)
    return nets.recipes.degradation_net(name, width=WIDTH, zero_init_residual=True)


def data():
    train_set = nets.Shapes(STEPS * BATCH // EPOCHS, image_size=IMAGE_SIZE, split="train", seed=0,
                            clutter=0, noise=0)
    val_set = nets.Shapes(1000, image_size=IMAGE_SIZE, split="val", seed=0, clutter=0, noise=0)
    return train_set, DataLoader(val_set, batch_size=500)


def train(name: str, lr: float, seed: int, train_set, val_loader) -> dict:
    generator = nets.seed_everything(seed)
    model = build(name)
    start = time.perf_counter()
    # chapter 1's recipe, the book's one copy of it (python -m nets.run degradation runs it too)
    h, _ = one_cycle_run(model, train_set, val_loader, lr=lr, steps=STEPS, batch_size=BATCH,
                         generator=generator, pct_start=0.15, cycle_momentum=False, drop_last=True,
                         device=torch.device("cpu"))
    stds = response_stds(model, val_loader.dataset.images[:500])
    return {
        "net": name, "lr": lr, "seed": seed, "steps": len(h.steps), "diverged": h.diverged,
        "response_std_mean": statistics.mean(stds) if stds else None,
        "train_error": 1 - h.last("metric", 50), "train_loss": h.last("loss", 50),
        "val_error": 1 - h["val_metric"][-1], "val_loss": h["val_loss"][-1],
        "val_error_per_epoch": [1 - v for v in h["val_metric"]],
        "train_error_per_epoch": [1 - v for v in h["train_metric"]],
        "seconds": time.perf_counter() - start,
    }


def response_stds(model: nn.Module, images: torch.Tensor) -> list:
    """The paper's Fig. 7 measure, as the chapter computes it: the std of every 3×3 layer's
    response inside the blocks (the output of its BN, before the ReLU or the addition), in
    eval mode. Empty for the pre-activation net, whose BNs come before the convolutions."""
    stds = []
    hooks = [m.register_forward_hook(lambda module, args, out: stds.append(out.std().item()))
             for name, m in model.named_modules()
             if isinstance(m, nn.BatchNorm2d) and name.startswith("layer")]
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return stds


def load() -> list:
    path = RESULTS / f"{STEM}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def best_lr(rows: list, net: str) -> float:
    """The peak rate with the lowest mean final training error over seeds 0-2, among the
    rates with the most of those seeds (stage 2's rates once it has run). The spread seeds
    3-7 play no part in the choice."""
    by_lr = {}
    for r in rows:
        if r["net"] == net and r["seed"] in SEEDS:
            by_lr.setdefault(r["lr"], []).append(r["train_error"])
    most = max(len(v) for v in by_lr.values())
    return min((lr for lr in by_lr if len(by_lr[lr]) == most), key=lambda lr: (statistics.mean(by_lr[lr]), lr))


def rates(rows: list, net: str) -> list:
    """The peak rates tried for ``net``, ascending."""
    return sorted({r["lr"] for r in rows if r["net"] == net})


def best_seed0(rows: list, net: str) -> float:
    seed0 = [r for r in rows if r["net"] == net and r["seed"] == SEEDS[0]]
    return min(seed0, key=lambda r: (r["train_error"], r["lr"]))["lr"]


def stage2_lrs(rows: list, net: str) -> list:
    """The best seed-0 rate and its neighbours in the net's grid."""
    grid = rates(rows, net)
    i = grid.index(best_seed0(rows, net))
    return grid[max(0, i - 1): i + 2]


def report(rows: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nets.plot import strip_plot

    nets_done = [n for n in NETS if any(r["net"] == n for r in rows)]
    keys = ("net", "lr", "seed", "train_error", "train_loss", "val_error", "val_loss", "diverged", "seconds")
    with open(RESULTS / f"{STEM}.csv", "w") as f:
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + "\n")

    lines = [f"# Chapter 1: degradation sweep ({STEPS} steps, batch {BATCH}, width {WIDTH}, "
             f"Shapes {IMAGE_SIZE}×{IMAGE_SIZE} clean, one thread)", "",
             "Final training error = mean over the last 50 steps; validation error on 1,000 "
             "held-out images after the last step. Mean (min–max) over the seeds 0-2 that choose "
             "the rate.", "",
             "| net | peak lr | seeds | training error | validation error | training loss | s per run |",
             "|---|---|---|---|---|---|---|"]
    for net in nets_done:
        best = best_lr(rows, net)
        for lr in rates(rows, net):
            sel = [r for r in rows if r["net"] == net and r["lr"] == lr and r["seed"] in SEEDS]
            if not sel:
                continue
            def fmt(key):
                v = [r[key] for r in sel]
                return f"{statistics.mean(v):.3f} ({min(v):.3f}–{max(v):.3f})"
            mark = " **best**" if lr == best else ""
            lines.append(f"| {net} | {lr}{mark} | {len(sel)} | {fmt('train_error')} | {fmt('val_error')} "
                         f"| {fmt('train_loss')} | {statistics.mean(r['seconds'] for r in sel):.0f} |")
    lines += ["", "Every seed at each net's best rate (seeds 3-7, where present, did not help choose "
              "it): mean (min–max)", "",
              "| net | peak lr | seeds | training error | validation error | response std (Fig. 7; runs) |",
              "|---|---|---|---|---|---|"]
    for net in nets_done:
        best = best_lr(rows, net)
        sel = [r for r in rows if r["net"] == net and r["lr"] == best]
        def fmt(key):
            v = [r[key] for r in sel]
            return f"{statistics.mean(v):.3f} ({min(v):.3f}–{max(v):.3f})"
        stds = [r["response_std_mean"] for r in sel if r.get("response_std_mean") is not None]
        fig7 = f"{statistics.mean(stds):.3f} ({min(stds):.3f}–{max(stds):.3f}; {len(stds)})" if stds else "–"
        lines.append(f"| {net} | {best} | {len(sel)} | {fmt('train_error')} | {fmt('val_error')} | {fig7} |")
    lines += ["", "Per seed at each net's best rate (training error / validation error):", ""]
    for net in nets_done:
        best = best_lr(rows, net)
        sel = sorted((r for r in rows if r["net"] == net and r["lr"] == best), key=lambda r: r["seed"])
        lines.append(f"- {net} at lr {best}: " + ", ".join(
            f"seed {r['seed']} {r['train_error']:.3f} / {r['val_error']:.3f}" for r in sel))
    (RESULTS / f"{STEM}.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for net in nets_done:
        lrs = rates(rows, net)
        means = [statistics.mean(r["train_error"] for r in rows if r["net"] == net and r["lr"] == lr
                                 and r["seed"] in SEEDS) for lr in lrs]
        line, = ax.plot(lrs, means, marker="o", label=net, linestyle="--" if net.startswith("plain") else "-")
        for r in rows:
            if r["net"] == net and r["seed"] in SEEDS:
                ax.plot(r["lr"], r["train_error"], ".", color=line.get_color(), alpha=0.5)
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    grid = sorted({r["lr"] for r in rows})
    ax.set_xticks(grid, labels=[f"{lr:g}" for lr in grid])
    ax.minorticks_off()
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("final training error")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{STEM}_lr.png", dpi=100)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, key in zip(axes, ("train_error", "val_error")):
        groups = {f"{net}\nlr {best_lr(rows, net)}": [r[key] for r in rows if r["net"] == net
                                                       and r["lr"] == best_lr(rows, net)] for net in nets_done}
        strip_plot(groups, ax=ax, ylabel=key.replace("_", " "))
    fig.tight_layout()
    fig.savefig(RESULTS / f"{STEM}_seeds.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only rewrite tables and plots")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.report:
        torch.set_num_threads(1)
        rows = load()
        done = {(r["net"], r["lr"], r["seed"]) for r in rows}
        train_set, val_loader = data()

        def run(net: str, lr: float, seed: int) -> None:
            if (net, lr, seed) in done:
                return
            row = train(net, lr, seed, train_set, val_loader)
            done.add((net, lr, seed))
            with open(RESULTS / f"{STEM}.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{net:>10} lr {lr:<5} seed {seed}: train {row['train_error']:.3f} "
                  f"val {row['val_error']:.3f} ({row['seconds']:.0f} s)", flush=True)

        for net in NETS:                                                    # stage 1: seed 0
            for lr in LRS:
                run(net, lr, SEEDS[0])
            while best_seed0(load(), net) == max(rates(load(), net)) < 3:   # best at the edge: extend
                run(net, round(2 * max(rates(load(), net)), 4), SEEDS[0])
        for core in (NETS[:4], NETS[4:]):                                   # stage 2, core nets first
            for seed in SEEDS[1:]:
                for net in core:
                    for lr in stage2_lrs(load(), net):
                        run(net, lr, seed)
            for net in core:            # both neighbours of the three-seed best get all three seeds
                while True:                 # (a doubled rate past the grid's edge if need be)
                    grid, best = rates(load(), net), best_lr(load(), net)
                    i = grid.index(best)
                    above = grid[i + 1] if i + 1 < len(grid) else round(2 * best, 4)
                    todo = [lr for lr in (grid[i - 1] if i else None, above) if lr is not None and lr < 7
                            and any((net, lr, seed) not in done for seed in SEEDS)]
                    if not todo:
                        break
                    for lr in todo:
                        for seed in SEEDS:
                            run(net, lr, seed)
            if core == NETS[:4]:
                for seed in SPREAD_SEEDS:                           # stage 3: the spread
                    for net in core:
                        run(net, best_lr(load(), net), seed)
    report(load())


if __name__ == "__main__":
    sys.exit(main())
