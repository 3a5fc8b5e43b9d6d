"""Run a headline experiment of the book at any scale, on any device, on one or many GPUs.

    python -m nets.run degradation                         # chapter 1's runs, on this machine
    python -m nets.run degradation --scale 20 --device cuda
    torchrun --nproc_per_node=4 -m nets.run degradation --recipe paper --data cifar10 \\
        --nets plain-20,plain-32,plain-44,plain-56,ResNet-20,ResNet-32,ResNet-44,ResNet-56

The last command is the ResNet paper's CIFAR-10 Fig. 6 setting (§4.2): the plain and
residual nets of 20–56 layers at width 16, batch 128, SGD with lr 0.1, momentum 0.9, weight
decay 1e-4, the rate ÷10 at 32k and 48k of 64k iterations, 4-pixel-padding crops and flips.
(The paper trains on 45k images and validates on 5k, and subtracts the per-pixel mean; here
the 50k training images are used, the 10k test images are the validation set, and pixels
stay in [0, 1].) Under torchrun the global batch stays 128:
each of K processes takes 128 / K.

Recipes:

* ``chapter`` (default): chapter 1's short budget — *Shapes* at 16×16 without clutter or
  noise, width 8, batch 128, ``520 · scale`` steps, ``nets.recipes.one_cycle_run`` with a
  15 % warm-up and no momentum cycling, ResNets with zero-initialised branches; each net
  at the peak rate chapter 1's sweep chose for it (``--lr`` overrides).
* ``paper``: the setting above, ``64,000 · scale / 20`` steps by default (``--steps`` to set
  it; ``--scale 20`` is the paper's 64k).

Writes, on rank 0 only, to ``--out``: ``degradation.jsonl`` (one record per net and seed:
settings, final training and validation error, seconds, per-epoch history),
``degradation_steps.csv`` (per step: net, seed, step, loss, training error of the batch)
and ``degradation.png`` (training error against steps, smoothed: the paper's Fig. 6 form).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from . import distributed
from .data import Shapes, cifar10
from .recipes import degradation_net, one_cycle_run, step_decay_run
from .runtime import device as pick_device
from .runtime import scaled, seed_everything

#: Chapter 1's peak rates, chosen per net by its sweep (benchmarks/experiments/
#: ch1_degradation_sweep.py; the chapter prints how). Nets not listed start at 0.1.
CHAPTER_RATES = {"plain-14": 0.2, "plain-26": 0.1, "ResNet-14": 1.6, "ResNet-26": 0.4}


def _parse_rates(text: Optional[str], names: List[str], recipe: str) -> Dict[str, float]:
    if recipe == "paper":
        rates = {name: 0.1 for name in names}
    else:
        rates = {name: CHAPTER_RATES.get(name, 0.1) for name in names}
    if text:
        if "=" not in text:
            return {name: float(text) for name in names}
        for item in text.split(","):
            name, _, value = item.partition("=")
            if name not in rates:
                raise ValueError(f"--lr names {name!r}, which is not in --nets {names}")
            rates[name] = float(value)
    return rates


def _data(args):
    if args.data == "cifar10":
        from torchvision import transforms
        augment = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                      transforms.RandomHorizontalFlip(), transforms.ToTensor()])
        train_set = cifar10(args.data_root, train=True, transform=augment)
        val_set = cifar10(args.data_root, train=False)
    else:
        size = 16 if args.recipe == "chapter" else 32
        # the chapter's set: ten epochs of the run's steps (at least one batch)
        n = max(args.batch_size, args.steps * args.batch_size // 10) if args.recipe == "chapter" else scaled(10_000)
        train_set = Shapes(n, image_size=size, split="train", seed=0, clutter=0, noise=0)
        val_set = Shapes(1000, image_size=size, split="val", seed=0, clutter=0, noise=0)
    return train_set, DataLoader(val_set, batch_size=500, num_workers=args.workers)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nets.run", description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (python -m pydoc nets.run).")
    sub = parser.add_subparsers(dest="experiment", required=True)
    p = sub.add_parser("degradation", help="plain vs residual nets of growing depth (chapter 1, paper Fig. 6)")
    p.add_argument("--recipe", choices=("chapter", "paper"), default="chapter")
    p.add_argument("--data", choices=("shapes", "cifar10"), default="shapes")
    p.add_argument("--data-root", default="data", help="where CIFAR-10 is (or is downloaded to)")
    p.add_argument("--nets", default=None,
                   help="comma-separated, e.g. plain-20,ResNet-20 (default: chapter 1's four, or "
                        "the paper's 20/32/44/56 pairs)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--lr", default=None, help="one rate for all, or net=rate,... (default: see above)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: scaled)")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch")
    p.add_argument("--width", type=int, default=None, help="base width (chapter 8, paper 16)")
    p.add_argument("--scale", type=float, default=None, help="sets NETS_SCALE")
    p.add_argument("--device", default=None, help="sets NETS_DEVICE (cpu, cuda, mps)")
    p.add_argument("--amp", choices=("bf16", "fp16"), default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: BatchNorm over the global batch")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--out", default="runs/degradation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def degradation(args, dev: torch.device) -> List[dict]:
    paper = args.recipe == "paper"
    names = (args.nets.split(",") if args.nets else
             [f"{k}-{d}" for k in ("plain", "ResNet") for d in (20, 32, 44, 56)] if paper else
             list(CHAPTER_RATES))
    rates = _parse_rates(args.lr, names, args.recipe)
    width = args.width or (16 if paper else 8)
    args.steps = args.steps or (scaled(3200) if paper else scaled(520))
    if args.sync_bn and dev.type != "cuda":
        raise ValueError("--sync-bn needs GPUs: DistributedDataParallel runs SyncBatchNorm only on CUDA")
    train_set, val_loader = _data(args)
    records = []
    for name in names:
        degradation_net(name)                  # a bad name fails before any training
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in names:
            generator = seed_everything(seed)
            model = degradation_net(name, width=width, zero_init_residual=not paper)
            if args.sync_bn:
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            run = step_decay_run if paper else one_cycle_run
            options = dict(lr=rates[name], steps=args.steps, batch_size=args.batch_size,
                           generator=generator, drop_last=True, num_workers=args.workers,
                           device=dev, quiet=args.quiet or not distributed.is_main(),
                           amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                           seed=seed)
            if not paper:
                options.update(pct_start=0.15, cycle_momentum=False)
            history, seconds = run(model, train_set, val_loader, **options)
            records.append({"net": name, "seed": seed, "lr": rates[name], "recipe": args.recipe,
                            "data": args.data, "width": width, "steps": args.steps,
                            "batch_size": args.batch_size, "processes": distributed.world_size(),
                            "device": dev.type, "amp": args.amp,
                            "train_error": 1 - history.last("metric", 50),
                            "val_error": 1 - history["val_metric"][-1], "seconds": seconds,
                            "diverged": history.diverged, "epochs": history.epochs,
                            "history": history})
            if distributed.is_main():
                print(f"{name:>10} seed {seed}: training error {records[-1]['train_error']:.3f}, "
                      f"validation error {records[-1]['val_error']:.3f}, {seconds:.0f} s", flush=True)
    return records


def write(records: List[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "degradation.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps({k: v for k, v in r.items() if k != "history"}) + "\n")
    with open(out / "degradation_steps.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["net", "seed", "step", "loss", "train_error"])
        for r in records:
            for s in r["history"].steps:
                writer.writerow([r["net"], r["seed"], s["step"], f"{s['loss']:.6g}", f"{1 - s['metric']:.6g}"])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import plot_history
    fig, ax = plt.subplots(figsize=(6.5, 4))
    window = max(1, max(len(r["history"].steps) for r in records) // 40)
    plot_history({f"{r['net']} (seed {r['seed']})": r["history"] for r in records}, key="metric",
                 error=True, window=window, ax=ax)
    ax.set_xlabel("step")
    ax.set_ylabel("training error of the batch (smoothed)")
    ax.set_title(f"degradation, {records[0]['recipe']} recipe on {records[0]['data']}")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "degradation.png", dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.scale is not None:
        os.environ["NETS_SCALE"] = str(args.scale)
    if args.device is not None:
        os.environ["NETS_DEVICE"] = args.device
    try:
        dev = distributed.local_device(pick_device())
        with distributed.process_group(dev):     # one group for all the runs under torchrun
            records = degradation(args, dev)
    except ValueError as error:          # bad settings: a clear message, not a traceback
        parser.error(str(error))
    except RuntimeError as error:        # e.g. CIFAR-10 neither here nor downloadable
        if "CIFAR-10" not in str(error):
            raise
        parser.error(str(error))
    if distributed.is_main():
        write(records, Path(args.out))
        print(f"wrote {args.out}/degradation.jsonl, degradation_steps.csv, degradation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
