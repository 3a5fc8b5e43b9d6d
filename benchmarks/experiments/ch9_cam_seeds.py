"""Chapter 9: do CAM and Grad-CAM of a small trained net fall on the Shapes objects, over
several seeds, and by how much more than the controls?

The net and recipe are chapter 6's baseline arm: ``nets.cifar_resnet(8, width=16)`` on 32×32
Shapes (6,000 training images), ``STEPS`` SGD steps of batch 64, one-cycle to the peak rate
0.3 (the rate chapter 6's sweep chose for this net at 400 steps), through
``benchmarks/experiments/recipe.py``. Per seed: validation accuracy; on 1,000 test images, for
the true class, CAM (layer3 → GAP → fc) and Grad-CAM (layer3) scored against the object masks
with ``nets.visualize.localization_scores`` (energy inside the mask, pointing game, AUC), for

* the trained net,
* the same net at its initialisation (untrained control),
* a random map (``torch.rand``),
* a centred Gaussian (the *centre prior*: Shapes objects are centred within ±0.45 of the
  half-width, so a map that knows nothing but "objects are near the middle" beats chance);
  its width is chosen on the validation split from ``SIGMAS`` by *energy*: AUC and pointing of
  a centred blob do not depend on its width (both depend only on the order of the pixels);
  energy rises as the width shrinks, and the grid stops at 0.1 because below it the tails
  underflow to exactly 0 and the resulting ties lower the AUC;
* the trained and the untrained CAM and the centre prior scored against the *next* test image's mask (the
  masks rolled by one): what a map earns from the objects' central position alone;
  a map that follows the object scores much higher on its own image's mask, the centre prior
  the same on both;
* paired per-image differences with their standard errors (``paired``: mean and SE over the
  test images, NaN images dropped) for trained CAM − centre prior, and own − next mask for the
  trained CAM, the untrained CAM and the centre prior, so that the chapter can count a win
  only when it exceeds 4 SE;
* Grad-CAM of the trained net at ``layer2`` (16×16 instead of 8×8);

and the first-layer kernels' neighbour correlation (correlation of horizontally and
vertically adjacent taps; about 0 for i.i.d. initial weights) before and after training.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/experiments/ch9_cam_seeds.py

One torch thread. Writes ``results/ch9_cam_seeds.json`` (per seed and map: mean scores) and
``results/ch9_cam_seeds.md``. All sizes are the constants below (``NETS_SCALE`` is not read).
The chapter imports ``centre_prior`` and ``neighbour_correlation`` from here.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import nets
from nets.visualize import class_activation_map, grad_cam, localization_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe import one_cycle_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "ch9_cam_seeds"
DEPTH, WIDTH, IMAGE_SIZE, CLASSES = 8, 16, 32, 10
N_TRAIN, N_VAL, N_TEST = 6000, 1000, 1000
STEPS, BATCH, LR = 300, 64, 0.3
SEEDS = [0, 1, 2, 3]
SIGMAS = [0.1, 0.15, 0.2, 0.3, 0.5, 0.7]   # below 0.1 the tails underflow to 0 and the ties cost AUC


def build() -> torch.nn.Module:
    """The chapter's net: ResNet-8, width 16, GAP + linear head."""
    return nets.cifar_resnet(DEPTH, width=WIDTH, num_classes=CLASSES)


def centre_prior(n: int, size: int, sigma: float) -> torch.Tensor:
    """(n, size, size) Gaussian centred on the image; sigma in units of the half-width."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2)).expand(n, size, size)


def neighbour_correlation(w: torch.Tensor) -> float:
    """Correlation between horizontally and vertically adjacent taps of conv kernels."""
    w = w.detach()
    a = torch.cat([w[..., :, :-1].flatten(), w[..., :-1, :].flatten()])
    b = torch.cat([w[..., :, 1:].flatten(), w[..., 1:, :].flatten()])
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def best_sigma(val: nets.Shapes) -> float:
    """Width of the centre prior with the highest mean energy on ``val`` (AUC and pointing do
    not depend on the width of a centred blob: they see only the order of the pixels)."""
    energy = {s: float(localization_scores(centre_prior(len(val), IMAGE_SIZE, s), val.masks)["energy"].mean())
              for s in SIGMAS}
    return max(energy, key=energy.get)


def paired(a: dict, b: dict) -> dict:
    """Mean and standard error over images of the per-image difference a − b, per score."""
    out = {}
    for k in ("energy", "pointing", "auc"):
        d = (a[k] - b[k])
        d = d[~torch.isnan(d)]
        out[k] = [round(float(d.mean()), 4), round(float(d.std() / len(d) ** 0.5), 4)]
    return out


def mean_scores(maps: torch.Tensor, masks: torch.Tensor) -> dict:
    return {k: round(float(v.nanmean()), 4) for k, v in localization_scores(maps, masks).items()}


def run_seed(seed: int, train, val, test, sigma: float) -> dict:
    gen = nets.seed_everything(seed)
    model = build()
    initial = copy.deepcopy(model)
    history, seconds = one_cycle_run(model, train, DataLoader(val, batch_size=500), lr=LR, steps=STEPS,
                                     batch_size=BATCH, generator=gen)
    model.eval()
    out = {"seed": seed, "val_acc": history["val_metric"][-1], "seconds": round(seconds, 1), "maps": {}}
    per_image = {}
    for tag, net in (("trained", model), ("untrained", initial)):
        cam, _ = class_activation_map(net, test.images, target=test.labels)
        gc, _ = grad_cam(net, test.images, "layer3", target=test.labels)
        per_image[f"{tag} CAM"] = localization_scores(cam, test.masks)
        per_image[f"{tag} CAM, next image's mask"] = localization_scores(cam, test.masks.roll(1, 0))
        out["maps"][f"{tag} CAM"] = mean_scores(cam, test.masks)
        out["maps"][f"{tag} Grad-CAM"] = mean_scores(gc, test.masks)
        # the same maps scored against the next image's mask: what the centre bias alone earns
        out["maps"][f"{tag} CAM, next image's mask"] = mean_scores(cam, test.masks.roll(1, 0))
        if tag == "trained":
            gc2, _ = grad_cam(net, test.images, "layer2", target=test.labels)
            out["maps"]["trained Grad-CAM layer2"] = mean_scores(gc2, test.masks)
    torch.manual_seed(seed)
    out["maps"]["random map"] = mean_scores(torch.rand(len(test), IMAGE_SIZE, IMAGE_SIZE), test.masks)
    prior = centre_prior(len(test), IMAGE_SIZE, sigma)
    out["maps"]["centre prior"] = mean_scores(prior, test.masks)
    out["maps"]["centre prior, next image's mask"] = mean_scores(prior, test.masks.roll(1, 0))
    per_image["centre prior"] = localization_scores(prior, test.masks)
    per_image["centre prior, next image's mask"] = localization_scores(prior, test.masks.roll(1, 0))
    out["paired"] = {
        "trained CAM - centre prior": paired(per_image["trained CAM"], per_image["centre prior"]),
        **{f"{m}: own - next mask": paired(per_image[m], per_image[f"{m}, next image's mask"])
           for m in ("trained CAM", "untrained CAM", "centre prior")}}
    out["neighbour_corr"] = {"initial": round(neighbour_correlation(initial.conv1.weight), 4),
                             "trained": round(neighbour_correlation(model.conv1.weight), 4)}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    torch.set_num_threads(1)
    train = nets.Shapes(N_TRAIN, IMAGE_SIZE, "train", seed=0)
    val = nets.Shapes(N_VAL, IMAGE_SIZE, "val", seed=0, target="both")
    test = nets.Shapes(N_TEST, IMAGE_SIZE, "test", seed=0, target="both")
    val_cls = nets.Shapes(N_VAL, IMAGE_SIZE, "val", seed=0)
    sigma = best_sigma(val)
    runs = [run_seed(s, train, val_cls, test, sigma) for s in SEEDS]
    RESULTS.mkdir(exist_ok=True)
    meta = {"steps": STEPS, "batch": BATCH, "lr": LR, "n_test": N_TEST, "centre_sigma": sigma,
            "machine": platform.machine(), "torch": torch.__version__, "threads": 1}
    (RESULTS / f"{NAME}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    names = list(runs[0]["maps"])
    lines = [f"# {NAME}", "",
             f"`benchmarks/experiments/{NAME}.py`: ResNet-8 width 16, 32×32 Shapes, {STEPS} steps of batch "
             f"{BATCH}, one-cycle to {LR}; {N_TEST} test images, maps for the true class; centre prior "
             f"sigma {sigma} (chosen on validation by energy). Mean per image; one torch thread, "
             f"torch {torch.__version__}.", "",
             "| map | " + " | ".join(f"seed {r['seed']} energy / pointing / AUC" for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for name in names:
        cells = [f"{r['maps'][name]['energy']:.3f} / {r['maps'][name]['pointing']:.3f} / {r['maps'][name]['auc']:.3f}"
                 for r in runs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "mask area (chance for energy and pointing): "
              + ", ".join(f"{r['maps']['random map']['area']:.3f}" for r in runs),
              "validation accuracy: " + ", ".join(f"{r['val_acc']:.3f}" for r in runs),
              "first-layer neighbour correlation initial → trained: "
              + ", ".join(f"{r['neighbour_corr']['initial']:+.3f} → {r['neighbour_corr']['trained']:+.3f}"
                          for r in runs), "",
              "paired per-image differences, mean ± SE (energy / pointing / AUC):", ""]
    for name in runs[0]["paired"]:
        lines.append(f"* {name}: " + "; ".join(
            "seed {}: ".format(r["seed"]) + " / ".join(f"{m:+.3f}±{se:.3f}" for m, se in r["paired"][name].values())
            for r in runs))
    lines.append("")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
