"""Chapter 0, "does the architecture matter?": each model at its own best learning rate.

Three models on the chapter's Shapes data (32×32, 6,000 training images, inputs
standardised per channel with the training set's statistics), trained with the chapter's
recipe (AdamW, one-cycle schedule, batch 64, 4 epochs):

* ``linear``   logistic regression on the pixels, ``nn.Linear(3·32·32, 10)``;
* ``MLP``      one hidden layer of ReLUs, as narrow as possible with at least as many
               parameters as the convnet;
* ``ResNet-8`` ``nets.cifar_resnet(8)``, the chapter's convolutional network.

For every model a sweep of the peak learning rate (``LRS``, three seeds each) picks the rate
with the best mean *validation* accuracy; the chapter trains each model at that rate. At the
chosen rate two more seeds give five per model, and every run also reports its accuracy on
a separate *test* split, which played no part in the choice.

    .venv/bin/python benchmarks/experiments/ch0_architecture.py     # ~30 min on one CPU thread (27 min on a busy machine)

Writes ``results/ch0_architecture.json`` (every run), ``results/ch0_architecture.md`` (the
tables) and ``results/ch0_architecture.png`` (the sweep and the per-seed strip plot). Runs at
``NETS_SCALE=1`` whatever the environment says: these are the numbers the chapter quotes.
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
NAME = "ch0_architecture"
LRS = [5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]
SWEEP_SEEDS = [0, 1, 2]
EXTRA_SEEDS = [3, 4]
EPOCHS = 4
BATCH = 64


def standardised_data():
    """Train / val / test Shapes sets, standardised with the training set's channel statistics."""
    train = nets.Shapes(6000, image_size=32, split="train", seed=0)
    val = nets.Shapes(1000, image_size=32, split="val", seed=0)
    test = nets.Shapes(1000, image_size=32, split="test", seed=0)
    mean = train.images.mean((0, 2, 3), keepdim=True)
    std = train.images.std((0, 2, 3), keepdim=True)
    for dataset in (train, val, test):
        dataset.images = (dataset.images - mean) / std
    return train, val, test


def mlp_width(target_params: int, inputs: int = 3 * 32 * 32, classes: int = 10) -> int:
    """The narrowest one-hidden-layer MLP with at least ``target_params`` parameters."""
    width = 1
    while (inputs + 1) * width + (width + 1) * classes < target_params:
        width += 1
    return width


def builders():
    conv_params = nets.count_params(nets.cifar_resnet(8, num_classes=10))
    width = mlp_width(conv_params)
    return {
        "linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)),
        "MLP": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, width), nn.ReLU(),
                                     nn.Linear(width, 10)),
        "ResNet-8": lambda: nets.cifar_resnet(8, num_classes=10),
    }


def run(build, lr: float, seed: int, train, val, test) -> dict:
    generator = nets.seed_everything(seed)
    model = build()
    loader = DataLoader(train, batch_size=BATCH, shuffle=True, generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                   total_steps=EPOCHS * len(loader))
    history = nets.fit(model, loader, DataLoader(val, batch_size=256), epochs=EPOCHS,
                       optimizer=optimizer, scheduler=schedule, device=torch.device("cpu"),
                       quiet=True)
    test_metrics = nets.evaluate(model, DataLoader(test, batch_size=256), device=torch.device("cpu"))
    return {"lr": lr, "seed": seed, "params": nets.count_params(model),
            "train_acc": history["train_metric"][-1], "val_acc": history["val_metric"][-1],
            "test_acc": test_metrics["metric"], "seconds": history.seconds,
            "diverged": history.diverged}


def best_lr(runs: list, arm: str) -> float:
    means = {lr: np.mean([r["val_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr
                          and r["seed"] in SWEEP_SEEDS]) for lr in LRS}
    return max(means, key=means.get)


def main() -> None:
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{NAME}.json"
    train, val, test = standardised_data()
    arms = builders()
    record = {"what": __doc__.split("\n\n")[0], "lrs": LRS, "sweep_seeds": SWEEP_SEEDS,
              "extra_seeds": EXTRA_SEEDS, "epochs": EPOCHS, "batch_size": BATCH,
              "torch": torch.__version__, "machine": platform.machine(), "threads": 1,
              "runs": [], "best_lr": {}}
    start = time.perf_counter()
    for arm, build in arms.items():
        for lr in LRS:
            for seed in SWEEP_SEEDS:
                result = {"arm": arm, **run(build, lr, seed, train, val, test)}
                record["runs"].append(result)
                print(f"{arm:>8} lr {lr:<7g} seed {seed}: train {result['train_acc']:.3f} "
                      f"val {result['val_acc']:.3f} test {result['test_acc']:.3f} "
                      f"({result['seconds']:.0f} s)", flush=True)
                out.write_text(json.dumps(record, indent=1))
        lr = best_lr(record["runs"], arm)
        record["best_lr"][arm] = lr
        for seed in EXTRA_SEEDS:
            result = {"arm": arm, **run(build, lr, seed, train, val, test)}
            record["runs"].append(result)
            print(f"{arm:>8} lr {lr:<7g} seed {seed}: val {result['val_acc']:.3f} "
                  f"test {result['test_acc']:.3f}", flush=True)
        out.write_text(json.dumps(record, indent=1))
    record["total_seconds"] = time.perf_counter() - start
    out.write_text(json.dumps(record, indent=1))
    write_tables(record)
    plot(record)


def write_tables(record: dict) -> None:
    runs = record["runs"]
    arms = list(record["best_lr"])
    lines = [f"# Chapter 0: each model at its own best learning rate\n",
             f"torch {record['torch']}, 1 CPU thread, {record['total_seconds']:.0f} s in all. "
             f"Generated by `benchmarks/experiments/{NAME}.py`.\n",
             "## Sweep: mean validation accuracy over seeds "
             f"{record['sweep_seeds']} (train accuracy in brackets)\n",
             "| peak lr | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for lr in record["lrs"]:
        cells = []
        for arm in arms:
            sel = [r for r in runs if r["arm"] == arm and r["lr"] == lr and r["seed"] in record["sweep_seeds"]]
            cells.append(f"{np.mean([r['val_acc'] for r in sel]):.3f} "
                         f"({np.mean([r['train_acc'] for r in sel]):.3f})")
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    lines += ["", "## At the chosen rate: every seed\n",
              "| model | params | chosen lr | seeds | val acc per seed | test acc per seed | test mean ± sd |",
              "|---|---|---|---|---|---|---|"]
    for arm in arms:
        sel = [r for r in runs if r["arm"] == arm and r["lr"] == record["best_lr"][arm]]
        tests = [r["test_acc"] for r in sel]
        lines.append(f"| {arm} | {sel[0]['params']:,} | {record['best_lr'][arm]:g} | {len(sel)} | "
                     + ", ".join(f"{r['val_acc']:.3f}" for r in sel) + " | "
                     + ", ".join(f"{t:.3f}" for t in tests)
                     + f" | {np.mean(tests):.3f} ± {np.std(tests, ddof=1):.3f} |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")


def plot(record: dict) -> None:
    runs = record["runs"]
    arms = list(record["best_lr"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for arm in arms:
        means = [np.mean([r["val_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr
                          and r["seed"] in record["sweep_seeds"]]) for lr in record["lrs"]]
        axes[0].plot(record["lrs"], means, marker="o", label=arm)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("peak learning rate (AdamW, one-cycle)")
    axes[0].set_ylabel("validation accuracy (mean of 3 seeds)")
    axes[0].axhline(0.1, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(frameon=False)
    for i, arm in enumerate(arms):
        tests = [r["test_acc"] for r in runs if r["arm"] == arm and r["lr"] == record["best_lr"][arm]]
        axes[1].scatter(np.full(len(tests), i) + np.linspace(-0.08, 0.08, len(tests)), tests)
    axes[1].set_xticks(range(len(arms)), [f"{a}\nlr {record['best_lr'][a]:g}" for a in arms])
    axes[1].set_ylabel("test accuracy, one dot per seed")
    axes[1].axhline(0.1, color="grey", linestyle=":", linewidth=1)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--tables-only":
        rec = json.loads((RESULTS / f"{NAME}.json").read_text())
        write_tables(rec)
        plot(rec)
    else:
        main()
