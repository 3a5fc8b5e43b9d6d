"""Chapter 7: a small U-Net on Shapes masks — loss (cross entropy vs CE + soft Dice), skip
connections (with vs without) and attention gates, each arm at its own learning rate.

Task: binary segmentation of 32×32 Shapes images (default noise and clutter): pixel label
1 on the object, 0 elsewhere (the distractors are background). Net: ``nets.UNet(3, 2,
base_width=8, depth=3)`` (121,186 parameters). The arms:

* ``U-Net, CE``          plain cross entropy;
* ``U-Net, CE+Dice``     ``nets.segmentation.DiceCELoss`` (CE + soft Dice, weights 1 and 1);
* ``no skips, CE+Dice``  ``UNet(..., skip_connections=False)``: the same layers and parameter
                         count, zeros joined in place of the encoder maps;
* ``attention, CE+Dice`` ``UNet(..., gate_layer=AttentionGate)`` (Attention U-Net's gates on
                         the three skips, +1,403 parameters: 122,589 in all).

Budget: ``STEPS`` Adam steps of batch ``BATCH`` on ``N_TRAIN`` images, one-cycle schedule to
the peak rate (PyTorch's ``OneCycleLR`` defaults). Protocol: the peak rate is swept over
``LRS`` with seed 0 (extended by one factor of 3 if the best is at an edge); the rate with the
best *validation* object Dice is the arm's rate; then seeds 1-4 run at that rate. Reported on
the *test* split (``N_TEST`` images, used for nothing else): Dice and IoU of the object
class, mean IoU, and the boundary F-score at a 1-pixel tolerance
(``nets.segmentation.boundary_f_score``), for seeds 1-4 (fresh seeds, not used to choose).

    nice -n 5 .venv/bin/python benchmarks/experiments/ch7_unet.py            # all (resumes)
    .venv/bin/python benchmarks/experiments/ch7_unet.py --report             # tables and plot

One torch thread. Every finished run is appended to ``results/ch7_unet.jsonl`` and skipped
when the script is started again. The report writes ``ch7_unet.md`` and ``ch7_unet.png``.
The chapter imports :func:`train` and :func:`make_data` so its runs are the script's runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nets
from nets.segmentation import DiceCELoss, boundary_f_score, dice_per_class, iou_per_class
from nets.unet import AttentionGate, UNet

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "ch7_unet"
IMAGE_SIZE, N_TRAIN, N_VAL, N_TEST = 32, 2000, 500, 500
STEPS, BATCH = 200, 32
LRS = (0.003, 0.01, 0.03)
SEEDS = (1, 2, 3, 4)
TOLERANCE = 1

ARMS: Dict[str, Dict] = {
    "U-Net, CE": dict(loss="ce", net={}),
    "U-Net, CE+Dice": dict(loss="ce+dice", net={}),
    "no skips, CE+Dice": dict(loss="ce+dice", net=dict(skip_connections=False)),
    "attention, CE+Dice": dict(loss="ce+dice", net=dict(gate_layer=AttentionGate)),
}


def build(arm: str) -> UNet:
    return UNet(3, 2, base_width=8, depth=3, **ARMS[arm]["net"])


def loss_fn(arm: str) -> nn.Module:
    return DiceCELoss() if ARMS[arm]["loss"] == "ce+dice" else nn.CrossEntropyLoss()


def make_data(split: str, n: int) -> TensorDataset:
    """Shapes images with binary masks (1 on the object, 0 on background and distractors)."""
    data = nets.Shapes(n, image_size=IMAGE_SIZE, split=split, seed=0, target="mask")
    return TensorDataset(data.images, (data.masks > 0).long())


@torch.no_grad()
def scores(model: nn.Module, data: TensorDataset) -> Dict[str, float]:
    """Object Dice and IoU, mean IoU over both classes, boundary F (1 px) of ``model`` on ``data``."""
    model.eval()
    images, masks = data.tensors
    pred = torch.cat([model(images[i:i + 250]).argmax(1) for i in range(0, len(images), 250)])
    dice, iou = dice_per_class(pred, masks, 2), iou_per_class(pred, masks, 2)
    return {"dice": dice[1].item(), "iou": iou[1].item(), "miou": iou.mean().item(),
            "bf": boundary_f_score(pred, masks, TOLERANCE)[0]}


def train(arm: str, lr: float, seed: int, train_set: TensorDataset, val_set: TensorDataset,
          steps: int = STEPS, on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None):
    """Seed, build the arm's net, train ``steps`` Adam steps (one-cycle to ``lr``), scoring
    ``val_set`` after every epoch. Returns ``(model, per-epoch list of scores)``."""
    generator = nets.seed_everything(seed)
    model = build(arm)
    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    criterion = loss_fn(arm)
    curve: List[Dict[str, float]] = []
    done = 0
    while done < steps:
        todo = min(len(loader), steps - done)
        history = nets.fit(model, loader, epochs=1, max_steps=todo, optimizer=optimizer,
                           scheduler=schedule, loss_fn=criterion, task="segmentation",
                           device=torch.device("cpu"), quiet=True)
        done += todo
        if history.diverged:
            curve.append({"step": done, "train_loss": float("inf"), "dice": 0.0, "iou": 0.0,
                          "miou": 0.0, "bf": 0.0})
            break
        curve.append({"step": done, "train_loss": history["train_loss"][-1], **scores(model, val_set)})
        if on_epoch is not None:
            on_epoch(len(curve), curve[-1])
    return model, curve


# ----------------------------------------------------------------------------- bookkeeping
def load_runs() -> List[Dict]:
    path = RESULTS / f"{NAME}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sweep_of(runs: List[Dict], arm: str) -> Dict[float, float]:
    """Validation object Dice of seed 0 per swept rate."""
    return {r["lr"]: r["val"]["dice"] for r in runs if r["arm"] == arm and r["seed"] == 0}


def best_lr(runs: List[Dict], arm: str) -> float:
    sweep = sweep_of(runs, arm)
    return max(sorted(sweep), key=lambda lr: sweep[lr])          # a tie goes to the smaller rate


def summary(runs: List[Dict]) -> Dict[str, Dict]:
    """Per arm: the chosen rate and the test scores of seeds 1-4 at that rate."""
    rows = {}
    for arm in ARMS:
        if not sweep_of(runs, arm):
            continue
        lr = best_lr(runs, arm)
        chosen = sorted((r for r in runs if r["arm"] == arm and r["lr"] == lr and r["seed"] in SEEDS),
                        key=lambda r: r["seed"])
        rows[arm] = {"lr": lr, "seeds": [r["seed"] for r in chosen],
                     **{k: [r["test"][k] for r in chosen] for k in ("dice", "iou", "miou", "bf")}}
    return rows


def run(arm: str, lr: float, seed: int, data, runs: List[Dict]) -> None:
    if any(r["arm"] == arm and r["lr"] == lr and r["seed"] == seed for r in runs):
        return
    train_set, val_set, test_set = data
    start = time.perf_counter()
    model, curve = train(arm, lr, seed, train_set, val_set)
    record = {"arm": arm, "lr": lr, "seed": seed, "steps": STEPS, "val": curve[-1],
              "test": scores(model, test_set), "curve": curve,
              "params": nets.count_params(model), "seconds": time.perf_counter() - start,
              "torch": torch.__version__, "machine": platform.machine()}
    runs.append(record)
    with open(RESULTS / f"{NAME}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{arm:<20} lr {lr:<6} seed {seed}: val Dice {curve[-1]['dice']:.3f}, "
          f"test Dice {record['test']['dice']:.3f}, BF {record['test']['bf']:.3f} "
          f"({record['seconds']:.0f} s)", flush=True)


def main_runs() -> None:
    data = (make_data("train", N_TRAIN), make_data("val", N_VAL), make_data("test", N_TEST))
    runs = load_runs()
    for arm in ARMS:
        lrs = list(LRS)
        for lr in lrs:
            run(arm, lr, 0, data, runs)
        sweep = sweep_of(runs, arm)
        best = best_lr(runs, arm)
        if best == min(sweep):                                    # at an edge: one step further
            run(arm, round(best / 3, 6), 0, data, runs)
        elif best == max(sweep):
            run(arm, round(best * 3, 6), 0, data, runs)
        for seed in SEEDS:
            run(arm, best_lr(runs, arm), seed, data, runs)


def report() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs()
    rows = summary(runs)
    lines = [f"# {NAME}: small U-Net on 32×32 Shapes masks ({STEPS} Adam steps, batch {BATCH}, "
             f"{N_TRAIN} training images; test scores of seeds {list(SEEDS)} at each arm's rate)", "",
             "| arm | params | rates swept (val Dice, seed 0) | rate | test Dice per seed | mean | "
             "boundary F (1 px) per seed | mean |", "|---|---|---|---|---|---|---|---|"]
    for arm, row in rows.items():
        sweep = ", ".join(f"{lr}: {d:.3f}" for lr, d in sorted(sweep_of(runs, arm).items()))
        params = next(r["params"] for r in runs if r["arm"] == arm)
        lines.append(f"| {arm} | {params:,} | {sweep} | {row['lr']} | "
                     f"{' / '.join(f'{v:.3f}' for v in row['dice'])} | {statistics.mean(row['dice']):.3f} | "
                     f"{' / '.join(f'{v:.3f}' for v in row['bf'])} | {statistics.mean(row['bf']):.3f} |")
    total = sum(r["seconds"] for r in runs)
    lines += ["", f"{len(runs)} runs, {total / 60:.1f} min of training on one thread "
              f"({platform.machine()}, torch {torch.__version__})."]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in zip(axes, ("dice", "bf"), ("test Dice (object)", "boundary F-score, 1 px")):
        nets.strip_plot({arm.replace(", ", "\n"): row[key] for arm, row in rows.items()}, ax=ax, ylabel=label)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="store_true", help="only write the tables and plot")
    args = parser.parse_args()
    os.environ["NETS_SCALE"] = "1"
    torch.set_num_threads(1)
    if not args.report:
        main_runs()
    report()
