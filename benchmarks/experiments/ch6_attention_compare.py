"""Chapter 6, the shared experiment of chapters 4-6: a small ResNet, plain, with SE, with CBAM
and with the dual-pooling head, at the same budget and each at its own learning rate.

The arms (all ``nets.cifar_resnet(8, width=16)`` on 32×32 Shapes, 10 classes):

* ``ResNet-8``        the baseline: global average pool → linear;
* ``+SE``             ``nets.se.SqueezeExcitation`` (reduction 4) in every block;
* ``+CBAM``           ``nets.cbam.CBAM`` (reduction 4, 7×7 spatial kernel) in every block;
* ``dual-pool head``  the baseline's backbone with ``nets.pooling.DualPoolHead`` (concat avg
                      and max → 1×1 conv 128→64 → dropout 0.5 → linear), the study notes' head;

and, in a second stage, three more heads on the same backbone, each a pooling + one linear
layer (``nets.pooling.pool_linear_head``): ``max head``, ``avg+max head`` (the halved sum) and
``cat head`` (avg and max concatenated, no 1×1 reduction, no dropout).

Initialisation: every layer as ``nets`` and PyTorch initialise it. The heads' starting losses
are not equalised (max-pooled features are larger at init, so a max head starts higher); the
chapter prints the gap, and each arm's own learning rate is the only correction.

Budget: ``STEPS`` SGD steps of batch ``BATCH`` (momentum 0.9, weight decay 5e-4, one-cycle to
the peak rate) on 6,000 training images with the default clutter and noise. Protocol: the peak
rate is swept over ``LRS`` with seed 0, extended by halving or doubling (up to ``EDGE_STEPS``
times) while the best rate is at the edge of what was swept; the rate with the best
*validation* accuracy is each arm's rate (a tie goes to the smaller rate); then seeds 1 and 2
run at that rate. Arms run one at a time, in the order of ``ALL_ARMS``. Reported: *test* accuracy (1,000 images of
the test split, used for nothing else) of seeds 0-2 at each arm's rate.

    nice -n 5 .venv/bin/python benchmarks/experiments/ch6_attention_compare.py           # all
    nice -n 5 .venv/bin/python benchmarks/experiments/ch6_attention_compare.py --stage 1 # 4 arms
    .venv/bin/python benchmarks/experiments/ch6_attention_compare.py --report            # tables

One torch thread. Every finished run is appended to ``results/ch6_attention_compare.jsonl``
and skipped when the script is started again, so an interrupted run resumes. The report
writes ``.csv`` (one row per run), ``.md`` (the table), ``.png`` (test accuracy per seed) and
``_latency.json`` (parameters, and inference latency with ``nets.compare_latency``, one
thread). Runs at ``NETS_SCALE=1`` whatever the environment says.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import nets
from recipe import one_cycle_run   # the shared recipe, benchmarks/experiments/recipe.py
from nets.cbam import CBAM
from nets.pooling import DualPoolHead, HeadedNet, pool_linear_head
from nets.se import SqueezeExcitation

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "ch6_attention_compare"
DEPTH, WIDTH, IMAGE_SIZE, CLASSES = 8, 16, 32, 10
N_TRAIN, N_VAL, N_TEST = 6000, 1000, 1000
STEPS, BATCH = 400, 64
LRS = [0.15, 0.3, 0.6]
SWEEP_SEED, SEEDS = 0, [0, 1, 2]
EDGE_STEPS = 2          # extend the sweep by halving/doubling at most this often per arm
FEATURES = 4 * WIDTH


def backbone(attn_layer=None):
    return nets.cifar_resnet(DEPTH, width=WIDTH, num_classes=CLASSES, attn_layer=attn_layer)


ARMS = {  # name -> builder; the chapter imports this dict, so both build the same nets
    "ResNet-8": lambda: backbone(),
    "+SE": lambda: backbone(partial(SqueezeExcitation, reduction=4, divisor=1)),
    "+CBAM": lambda: backbone(partial(CBAM, reduction=4)),
    "dual-pool head": lambda: HeadedNet(backbone(), DualPoolHead(FEATURES, CLASSES)),
}
HEAD_ARMS = {
    "max head": lambda: HeadedNet(backbone(), pool_linear_head(FEATURES, CLASSES, "max")),
    "avg+max head": lambda: HeadedNet(backbone(), pool_linear_head(FEATURES, CLASSES, "avgmax")),
    "cat head": lambda: HeadedNet(backbone(), pool_linear_head(FEATURES, CLASSES, "catavgmax")),
}
ALL_ARMS = {**ARMS, **HEAD_ARMS}


def data():
    train_set = nets.Shapes(N_TRAIN, image_size=IMAGE_SIZE, split="train", seed=0)
    val_loader = DataLoader(nets.Shapes(N_VAL, image_size=IMAGE_SIZE, split="val", seed=0), batch_size=500)
    test_loader = DataLoader(nets.Shapes(N_TEST, image_size=IMAGE_SIZE, split="test", seed=0), batch_size=500)
    return train_set, val_loader, test_loader


def train(build, lr, seed, train_set, val_loader, test_loader, steps=STEPS):
    """One run: returns (model, record). The chapter calls this to rerun one seed."""
    gen = nets.seed_everything(seed)
    model = build()
    history, seconds = one_cycle_run(model, train_set, val_loader, lr=lr, steps=steps, batch_size=BATCH,
                                     generator=gen)
    test = nets.evaluate(model, test_loader, device=torch.device("cpu"))
    record = dict(lr=lr, seed=seed, steps=steps, val_acc=round(history["val_metric"][-1], 4),
                  test_acc=round(test["metric"], 4), train_loss=round(history.last("loss", 50), 4),
                  diverged=history.diverged, params=nets.count_params(model), seconds=round(seconds, 1))
    return model, record


def load_runs():
    path = RESULTS / f"{NAME}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sweep_of(runs, arm):
    """{rate: validation accuracy} of the arm's seed-0 runs (the sweep, edges included)."""
    return {r["lr"]: r["val_acc"] for r in runs if r["arm"] == arm and r["seed"] == SWEEP_SEED}


def best_lr(runs, arm):
    """The swept rate with the best validation accuracy of seed 0 (None until LRS are done);
    a tie goes to the smaller rate."""
    sweep = sweep_of(runs, arm)
    if any(lr not in sweep for lr in LRS):
        return None
    return max(sorted(sweep), key=lambda lr: sweep[lr])


def run_stage(arms, train_set, val_loader, test_loader):
    path = RESULTS / f"{NAME}.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)

    def run(arm, lr, seed):
        if any(r["arm"] == arm and r["lr"] == lr and r["seed"] == seed for r in load_runs()):
            return
        _, record = train(ALL_ARMS[arm], lr, seed, train_set, val_loader, test_loader)
        record = dict(arm=arm, **record)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{arm:<15} lr {lr:<5} seed {seed}: val {record['val_acc']:.3f} test "
              f"{record['test_acc']:.3f} ({record['seconds']:.0f} s)", flush=True)

    for arm in arms:                                   # one arm at a time: a cut-short run leaves whole arms
        for lr in LRS:                                 # the sweep, seed 0
            run(arm, lr, SWEEP_SEED)
        for _ in range(EDGE_STEPS):                    # best at an edge: one more rate beyond it
            sweep = sweep_of(load_runs(), arm)
            lr = best_lr(load_runs(), arm)
            if lr == min(sweep):
                run(arm, round(lr / 2, 4), SWEEP_SEED)
            elif lr == max(sweep):
                run(arm, round(lr * 2, 4), SWEEP_SEED)
            else:
                break
        for seed in SEEDS:                             # more seeds at the arm's rate
            run(arm, best_lr(load_runs(), arm), seed)


def latency_report():
    """Parameters and single-thread inference latency of every arm (eval mode)."""
    out = {"threads": 1, "torch": torch.__version__, "machine": platform.machine(), "arms": {}}
    models = {}
    for arm, build in ALL_ARMS.items():
        nets.seed_everything(0)
        models[arm] = build().eval()
        out["arms"][arm] = {"params": nets.count_params(models[arm]),
                            "macs": nets.count_macs(models[arm], (1, 3, IMAGE_SIZE, IMAGE_SIZE))}
    for batch in (1, 64):
        x = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE)
        cmp = nets.compare_latency(models, x, threads=1, rounds=15)
        for arm in models:
            out["arms"][arm][f"ms_batch{batch}"] = round(cmp.median[arm] * 1e3, 3)
            out["arms"][arm][f"ratio_batch{batch}"] = round(cmp.ratio[arm], 3)
    (RESULTS / f"{NAME}_latency.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def summary(runs):
    """Per arm with all its runs done: the chosen rate and the test accuracies of the seeds at it."""
    rows = {}
    for arm in ALL_ARMS:
        lr = best_lr(runs, arm)
        if lr is None:
            continue
        accs = [r["test_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr and r["seed"] in SEEDS]
        if len(accs) < len(SEEDS):
            continue
        rows[arm] = dict(lr=lr, seeds=len(accs), test=accs, mean=statistics.mean(accs),
                         sd=statistics.stdev(accs) if len(accs) > 1 else float("nan"))
    return rows


def report(runs, latency):
    with (RESULTS / f"{NAME}.csv").open("w", newline="") as f:
        keys = list(runs[0])
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(runs)
    rows = summary(runs)
    lines = [f"# {NAME}", "",
             f"`benchmarks/experiments/{NAME}.py`: ResNet-{DEPTH} width {WIDTH} on {IMAGE_SIZE}×{IMAGE_SIZE} "
             f"Shapes ({N_TRAIN} training images), {STEPS} SGD steps of batch {BATCH}, one-cycle to the peak "
             f"rate. Rate chosen on validation accuracy (seed {SWEEP_SEED}, rates {LRS}); test accuracy "
             f"({N_TEST} images, chance 0.1) of seeds {SEEDS} at that rate. {platform.machine()}, 1 torch "
             f"thread, torch {torch.__version__}.", "",
             "| arm | val acc (seed 0) per rate | rate | test acc per seed | mean ± sd "
             "| params | latency ×base (batch 1 / 64) |",
             "|---|---|---|---|---|---|---|"]
    for arm in ALL_ARMS:
        sweep = sweep_of(runs, arm)
        if not sweep:
            continue
        cells = ", ".join(f"{lr}: {sweep[lr]:.3f}" for lr in sorted(sweep))
        lat = latency["arms"][arm]
        if arm in rows:
            row = rows[arm]
            lines.append(f"| {arm} | {cells} | {row['lr']} | " + " / ".join(f"{a:.3f}" for a in row["test"])
                         + f" | {row['mean']:.3f} ± {row['sd']:.3f} | {lat['params']:,} | "
                         f"{lat['ratio_batch1']:.2f} / {lat['ratio_batch64']:.2f} |")
        else:
            lines.append(f"| {arm} | {cells} | – | – | – | {lat['params']:,} | "
                         f"{lat['ratio_batch1']:.2f} / {lat['ratio_batch64']:.2f} |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 3.4))
    nets.strip_plot({arm.replace(" head", "\nhead"): row["test"] for arm, row in rows.items()}, ax=ax,
                    ylabel="test accuracy", chance=0.1)
    ax.set_title(f"ResNet-{DEPTH} variants, {STEPS} steps, seeds {SEEDS} at each arm's rate")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", type=int, choices=(1, 2), help="only the 4 shared arms (1) or the heads (2)")
    parser.add_argument("--report", action="store_true", help="only write the tables and the plot")
    args = parser.parse_args()
    os.environ["NETS_SCALE"] = "1"      # here, not at import: the chapter imports this file
    torch.set_num_threads(1)
    if not args.report:
        train_set, val_loader, test_loader = data()
        if args.stage in (None, 1):
            run_stage(list(ARMS), train_set, val_loader, test_loader)
        if args.stage in (None, 2):
            run_stage(list(HEAD_ARMS), train_set, val_loader, test_loader)
    report(load_runs(), latency_report())


if __name__ == "__main__":
    main()
