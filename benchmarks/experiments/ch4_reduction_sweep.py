"""Chapter 4: the SE reduction ratio r on a small net, each setting at its own learning rate.

The net: ``nets.cifar_resnet(14, width=16)`` (two basic blocks per stage, 16/32/64 channels)
on 16×16 *Shapes* images, without SE and with an SE block in every residual block at
``r`` in ``REDUCTIONS``. The SE blocks use ``divisor=1`` (squeeze width ``round(C / r)``,
never below 1) so that every r gives a different width; with the default ``divisor=8`` all of
r = 2 … 16 would round the 16- and 32-channel stages up to 8 channels and the sweep would
compare almost the same nets.

Same budget for each (``STEPS`` SGD steps of batch ``BATCH``, momentum 0.9, weight decay 5e-4,
one-cycle schedule to the peak rate). Phase 1: every setting at every peak rate in ``LRS``
with seeds ``SEEDS_LR``; the rate with the best mean validation accuracy is the setting's
own. Phase 2: seeds ``SEEDS_MORE`` at that rate, so each setting ends with
``len(SEEDS_LR) + len(SEEDS_MORE)`` runs at its chosen rate.

    nice -n 5 .venv/bin/python benchmarks/experiments/ch4_reduction_sweep.py   # one CPU thread

Writes ``results/ch4_reduction_sweep.json`` (every run, resumable), ``.md`` (tables) and
``.png`` (validation accuracy per seed at each setting's chosen rate). Runs at
``NETS_SCALE=1`` whatever the environment says.
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
from nets.se import SqueezeExcitation  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "ch4_reduction_sweep"
DEPTH, WIDTH, IMAGE_SIZE = 14, 16, 16
REDUCTIONS = [None, 2, 4, 8, 16]          # None: no SE (the plain ResNet-14)
LRS = [0.1, 0.2, 0.4]
SEEDS_LR, SEEDS_MORE = [0, 1], [2, 3]
STEPS, BATCH, N_TRAIN, N_VAL = 300, 64, 6000, 1000


def label(r) -> str:
    return "no SE" if r is None else f"r={r}"


def build(r) -> torch.nn.Module:
    """The chapter's small net: the same builder the chapter uses."""
    attn = None if r is None else partial(SqueezeExcitation, reduction=r, divisor=1)
    return nets.cifar_resnet(DEPTH, width=WIDTH, attn_layer=attn)


def train(r, lr, seed, train_set, val_loader):
    gen = nets.seed_everything(seed)
    model = build(r)
    history, seconds = one_cycle_run(model, train_set, val_loader, lr=lr, steps=STEPS, batch_size=BATCH,
                                     generator=gen)
    return history["val_metric"][-1], seconds, nets.count_params(model)


def chosen_rates(runs):
    out = {}
    for r in REDUCTIONS:
        means = {lr: statistics.mean(x["val_acc"] for x in runs if x["r"] == r and x["lr"] == lr
                                     and x["seed"] in SEEDS_LR) for lr in LRS}
        out[r] = max(means, key=means.get)
    return out


def main() -> None:
    torch.set_num_threads(1)
    train_set = nets.Shapes(N_TRAIN, image_size=IMAGE_SIZE, split="train", seed=0)
    val_loader = DataLoader(nets.Shapes(N_VAL, image_size=IMAGE_SIZE, split="val", seed=0), batch_size=500)
    path = RESULTS / f"{NAME}.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {(x["r"], x["lr"], x["seed"]) for x in runs}

    def run(r, lr, seed):
        if (r, lr, seed) in done:
            return
        acc, seconds, params = train(r, lr, seed, train_set, val_loader)
        runs.append(dict(r=r, lr=lr, seed=seed, val_acc=acc, params=params, seconds=round(seconds, 1)))
        print(f"{label(r):<6} lr {lr:<4} seed {seed}: val acc {acc:.3f} ({seconds:.0f} s)", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(runs, indent=1) + "\n")

    for seed in SEEDS_LR:                      # phase 1: the rate sweep
        for lr in LRS:
            for r in REDUCTIONS:
                run(r, lr, seed)
    chosen = chosen_rates(runs)
    for seed in SEEDS_MORE:                    # phase 2: more seeds at each setting's rate
        for r in REDUCTIONS:
            run(r, chosen[r], seed)

    seeds = SEEDS_LR + SEEDS_MORE
    lines = [f"# {NAME}", "",
             f"`benchmarks/experiments/{NAME}.py`: cifar_resnet({DEPTH}, width={WIDTH}) on {IMAGE_SIZE}x{IMAGE_SIZE} "
             f"Shapes ({N_TRAIN} train, {N_VAL} val images, chance 0.1), {STEPS} SGD steps of batch {BATCH}, "
             f"one-cycle to the peak rate; SE with divisor=1 in every block; {platform.machine()}, "
             f"1 torch thread, torch {torch.__version__}.", "",
             f"Phase 1, validation accuracy per peak rate (seeds {SEEDS_LR}):", "",
             "| setting | params | " + " | ".join(f"lr {lr}" for lr in LRS) + " | chosen lr |",
             "|---|---|" + "---|" * (len(LRS) + 1)]
    for r in REDUCTIONS:
        cells = [" / ".join(f"{x['val_acc']:.3f}" for x in runs if x["r"] == r and x["lr"] == lr
                            and x["seed"] in SEEDS_LR) for lr in LRS]
        params = next(x["params"] for x in runs if x["r"] == r)
        lines.append(f"| {label(r)} | {params:,} | " + " | ".join(cells) + f" | {chosen[r]} |")
    lines += ["", f"At each setting's chosen rate, seeds {seeds}:", "",
              "| setting | lr | mean | min | max | per seed |", "|---|---|---|---|---|---|"]
    groups = {}
    for r in REDUCTIONS:
        accs = [x["val_acc"] for x in sorted(runs, key=lambda x: x["seed"])
                if x["r"] == r and x["lr"] == chosen[r] and x["seed"] in seeds]
        groups[label(r)] = accs
        lines.append(f"| {label(r)} | {chosen[r]} | {statistics.mean(accs):.3f} | {min(accs):.3f} | "
                     f"{max(accs):.3f} | " + " / ".join(f"{a:.3f}" for a in accs) + " |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ax = nets.strip_plot(groups, ylabel="validation accuracy", chance=0.1)
    ax.set_title(f"ResNet-{DEPTH} on Shapes, {STEPS} steps, each at its own rate", fontsize=9)
    plt.tight_layout()
    plt.savefig(RESULTS / f"{NAME}.png", dpi=100)


if __name__ == "__main__":
    main()
