"""Chapter 3, section 9: three small efficient nets on Shapes, each at its own learning rate.

The chapter's three networks for 32×32 Shapes images (similar MACs, very different shapes):

* ``MobileNetV2-style``   ``MobileNetV2`` with ``SMALL_V2`` (two strides fewer, narrow head);
* ``ShuffleNetV2-style``  ``ShuffleNetV2`` with the 0.5× stage widths, a 512-channel ``conv5``
                          and no max pool;
* ``ResNet-8``            ``nets.cifar_resnet(8, width=8)``.

and, for the record, ``ShuffleNet V2 1.0x`` unchanged (``nets.shufflenet_v2_x1_0``), whose
ImageNet stem leaves a 1×1 map in the last stage at 32×32: the chapter's first choice, replaced
by the style net above after this sweep (see the table).

Same budget for each (``STEPS`` SGD steps of batch ``BATCH``, momentum 0.9, weight decay
5e-4, one-cycle schedule to the peak rate); the peak learning rate is swept over ``LRS`` with
``SEEDS``, and the rate with the best mean *validation* accuracy is the one the chapter
trains each net at, with a seed not used here.

    .venv/bin/python benchmarks/experiments/ch3_small_nets.py     # one CPU thread

Writes ``results/ch3_small_nets.json`` (every run) and ``results/ch3_small_nets.md`` (the
table and the chosen rates). Runs at ``NETS_SCALE=1`` whatever the environment says.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

os.environ["NETS_SCALE"] = "1"

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import nets  # noqa: E402
from recipe import one_cycle_run  # noqa: E402   # the shared recipe, benchmarks/experiments/recipe.py
from torch import nn  # noqa: E402

from nets.mobilenet import MobileNetV2  # noqa: E402
from nets.shufflenet import SHUFFLENET_V2_REPEATS, ShuffleNetV2  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "ch3_small_nets"
LRS = [0.05, 0.15, 0.4, 1.0]
SEEDS = [0, 1]
STEPS, BATCH = 300, 64
SMALL_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 1))
def shufflenet_v2_small():
    """ShuffleNet V2 with the 0.5x stage widths, a 512-channel conv5 and no max pool."""
    model = ShuffleNetV2(SHUFFLENET_V2_REPEATS, (24, 48, 96, 192, 512), num_classes=10)
    model.maxpool = nn.Identity()
    return model


SMALL_NETS = {  # the same three builders as the chapter's section 9
    "MobileNetV2-style": lambda: MobileNetV2(num_classes=10, setting=SMALL_V2, stem_channels=16,
                                             last_channel=256, dropout=0.0),
    "ShuffleNetV2-style": lambda: shufflenet_v2_small(),
    "ResNet-8": lambda: nets.cifar_resnet(8, width=8),
}


NETS = {**SMALL_NETS, "ShuffleNet V2 1.0x": lambda: nets.shufflenet_v2_x1_0(num_classes=10)}


def train(build, lr, seed, train_set, val_loader):
    gen = nets.seed_everything(seed)
    model = build()
    history, seconds = one_cycle_run(model, train_set, val_loader, lr=lr, steps=STEPS, batch_size=BATCH,
                                     generator=gen)
    return history["val_metric"][-1], seconds


def main() -> None:
    torch.set_num_threads(1)
    train_set = nets.Shapes(6000, image_size=32, split="train", seed=0)
    val_loader = DataLoader(nets.Shapes(1000, image_size=32, split="val", seed=0), batch_size=500)
    path = RESULTS / f"{NAME}.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {(r["net"], r["lr"], r["seed"]) for r in runs}
    for name, build in NETS.items():
        for lr in LRS:
            for seed in SEEDS:
                if (name, lr, seed) in done:
                    continue
                acc, seconds = train(build, lr, seed, train_set, val_loader)
                runs.append(dict(net=name, lr=lr, seed=seed, val_acc=acc, seconds=round(seconds, 1)))
                print(f"{name:<20} lr {lr:<5} seed {seed}: val acc {acc:.3f} ({seconds:.0f} s)", flush=True)
                RESULTS.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(runs, indent=1) + "\n")
    lines = [f"# {NAME}", "",
             f"`benchmarks/experiments/{NAME}.py`: {STEPS} SGD steps of batch {BATCH}, one-cycle to the "
             f"peak rate; validation accuracy on 1,000 Shapes images (chance 0.1); seeds {SEEDS}; "
             f"{platform.machine()}, 1 torch thread, torch {torch.__version__}.", "",
             "| net | " + " | ".join(f"lr {lr}" for lr in LRS) + " | chosen lr |",
             "|---|" + "---|" * (len(LRS) + 1)]
    for name in NETS:
        means = {lr: sum(r["val_acc"] for r in runs if r["net"] == name and r["lr"] == lr) / len(SEEDS)
                 for lr in LRS}
        cells = [" / ".join(f"{r['val_acc']:.3f}" for r in runs if r["net"] == name and r["lr"] == lr)
                 for lr in LRS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {max(means, key=means.get)} |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
