"""Chapter 5: CBAM's design choices on Shapes, each arm at its own learning rate.

The paper's three ablations (Woo et al. 2018, Tables 1-3), shrunk to this book's budget.
One network for all arms: a CIFAR ResNet-8 of width 8 (``nets.cifar_resnet(8, width=8)``)
with CBAM (reduction 4, so the hidden widths are 2 / 4 / 8; r = 16 would leave one or two
hidden units at these widths) in each of its three blocks. The arms change one thing each
against the reference ("avg+max k7 C-S"):

* channel pooling: ``avg`` / ``max`` / ``avg+max`` (``pool_types``);
* spatial kernel: 3 vs 7 (``kernel_size``);
* arrangement: channel-then-spatial vs spatial-then-channel (``order``).

Same budget for each (``STEPS`` SGD steps of batch ``BATCH``, momentum 0.9, weight decay 5e-4,
one-cycle to the peak rate) on 6,000 32×32 Shapes images; validation accuracy on 1,000. Each
arm's peak rate is chosen from ``LRS`` by the mean over ``SWEEP_SEEDS``; at that rate it also
runs ``EXTRA_SEEDS``, so every arm has three seeds at its own rate.

    nice -n 5 .venv/bin/python benchmarks/experiments/ch5_cbam_ablations.py   # one CPU thread

Writes ``results/ch5_cbam_ablations.json`` (every run; resumable), ``.md`` (table) and
``.png`` (per-seed accuracies at each arm's rate). Runs at ``NETS_SCALE=1`` whatever the
environment says.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from functools import partial
from pathlib import Path

os.environ["NETS_SCALE"] = "1"

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import nets  # noqa: E402
from recipe import one_cycle_run  # noqa: E402   # the shared recipe, benchmarks/experiments/recipe.py
from nets.cbam import CBAM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "ch5_cbam_ablations"
LRS = [0.15, 0.4]
SWEEP_SEEDS = [0, 1]
EXTRA_SEEDS = [2]
STEPS, BATCH, REDUCTION = 300, 64, 4
ARMS = {  # name -> CBAM keywords; the first is the reference (the paper's CBAM)
    "avg+max k7 C-S": dict(pool_types=("avg", "max"), kernel_size=7, order="channel-spatial"),
    "avg k7 C-S": dict(pool_types=("avg",), kernel_size=7, order="channel-spatial"),
    "max k7 C-S": dict(pool_types=("max",), kernel_size=7, order="channel-spatial"),
    "avg+max k3 C-S": dict(pool_types=("avg", "max"), kernel_size=3, order="channel-spatial"),
    "avg+max k7 S-C": dict(pool_types=("avg", "max"), kernel_size=7, order="spatial-channel"),
}


def build(arm: str) -> torch.nn.Module:
    return nets.cifar_resnet(8, width=8, attn_layer=partial(CBAM, reduction=REDUCTION, **ARMS[arm]))


def train(arm, lr, seed, train_set, val_loader):
    gen = nets.seed_everything(seed)
    model = build(arm)
    history, seconds = one_cycle_run(model, train_set, val_loader, lr=lr, steps=STEPS, batch_size=BATCH,
                                     generator=gen)
    return history["val_metric"][-1], seconds


def chosen_lr(runs, arm):
    means = {lr: statistics.mean(r["val_acc"] for r in runs
                                 if r["arm"] == arm and r["lr"] == lr and r["seed"] in SWEEP_SEEDS)
             for lr in LRS}
    return max(means, key=means.get), means


def main() -> None:
    torch.set_num_threads(1)
    train_set = nets.Shapes(6000, image_size=32, split="train", seed=0)
    val_loader = DataLoader(nets.Shapes(1000, image_size=32, split="val", seed=0), batch_size=500)
    path = RESULTS / f"{NAME}.json"
    runs = json.loads(path.read_text()) if path.exists() else []

    def run(arm, lr, seed):
        if any(r["arm"] == arm and r["lr"] == lr and r["seed"] == seed for r in runs):
            return
        acc, seconds = train(arm, lr, seed, train_set, val_loader)
        runs.append(dict(arm=arm, lr=lr, seed=seed, val_acc=acc, seconds=round(seconds, 1)))
        print(f"{arm:<16} lr {lr:<5} seed {seed}: val acc {acc:.3f} ({seconds:.0f} s)", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(runs, indent=1) + "\n")

    for arm in ARMS:                         # arm by arm, so a partial run is still usable
        for lr in LRS:
            for seed in SWEEP_SEEDS:
                run(arm, lr, seed)
        lr, _ = chosen_lr(runs, arm)
        for seed in EXTRA_SEEDS:
            run(arm, lr, seed)

    lines = [f"# {NAME}", "",
             f"`benchmarks/experiments/{NAME}.py`: CIFAR ResNet-8, width 8, CBAM (r = {REDUCTION}) in every "
             f"block; {STEPS} SGD steps of batch {BATCH}, one-cycle to the peak rate; validation accuracy "
             f"on 1,000 32x32 Shapes images (chance 0.1). Rate chosen per arm on seeds {SWEEP_SEEDS}; "
             f"seeds {EXTRA_SEEDS} added at that rate. {platform.machine()}, 1 torch thread, torch "
             f"{torch.__version__}.", "",
             "| arm | params | " + " | ".join(f"lr {lr} (seeds {SWEEP_SEEDS})" for lr in LRS)
             + " | chosen lr | seeds at it | mean ± sd |",
             "|---|---|" + "---|" * (len(LRS) + 3)]
    groups = {}
    for arm in ARMS:
        lr, _ = chosen_lr(runs, arm)
        cells = [" / ".join(f"{r['val_acc']:.3f}" for r in runs
                            if r["arm"] == arm and r["lr"] == l and r["seed"] in SWEEP_SEEDS) for l in LRS]
        accs = [r["val_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr]
        groups[arm] = accs
        lines.append(f"| {arm} | {nets.count_params(build(arm)):,} | " + " | ".join(cells)
                     + f" | {lr} | {' / '.join(f'{a:.3f}' for a in accs)} | "
                     f"{statistics.mean(accs):.3f} ± {statistics.stdev(accs):.3f} |")
    lines += ["", f"total training time {sum(r['seconds'] for r in runs) / 60:.1f} min"]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ax = nets.strip_plot(groups, ylabel="validation accuracy", chance=0.1)
    n_seeds = len(SWEEP_SEEDS) + len(EXTRA_SEEDS)
    ax.set_title(f"CBAM ablations on Shapes, each arm at its own rate, {n_seeds} seeds")
    ax.figure.autofmt_xdate(rotation=20)
    ax.figure.tight_layout()
    ax.figure.savefig(RESULTS / f"{NAME}.png", dpi=110)


if __name__ == "__main__":
    main()
