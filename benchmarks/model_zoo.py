"""The model zoo page: every `nets` model with its parameters, MACs, CPU latency, reported
ImageNet top-1 and how the book verifies it — generated from `nets`, never typed by hand.

    python benchmarks/model_zoo.py            # measure, write results/model_zoo.json and book/model_zoo.md
    python benchmarks/model_zoo.py --render   # rewrite book/model_zoo.md from the stored JSON

* Parameters: ``nets.count_params``; MACs: ``nets.count_macs`` (``torch.utils.flop_counter``,
  multiply-accumulates = FLOPs / 2, as torchvision's "GFLOPS") at the model's native input.
* Latency: ``nets.latency`` (``torch.utils.benchmark``), batch 1, eval mode, no autograd,
  PyTorch's default thread count on the machine that ran this; run it on a quiet machine.
* Top-1: torchvision's weight metadata (``torchvision.models.get_model_weights``; nothing is
  downloaded) for the models torchvision has; otherwise the paper's figure as recorded in
  ``PAPER_TOP1`` with its source, or "—".

``tests/test_model_zoo.py`` recomputes everything but the latency and fails if the stored
JSON or the page is stale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torchvision.models as tvm
from torch import nn

import nets

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "model_zoo.json"
PAGE = ROOT / "book" / "model_zoo.md"

# How each family is verified, and the test file that does it.
VERIFIED = {
    "resnet": ("torchvision twin: same state_dict, identical outputs", "tests/test_resnet.py"),
    "se": ("parameter count (FC with bias, r = 16); gates forced open = torchvision's ResNet",
           "tests/test_se.py"),
    "cbam": ("parameter count (authors' code); gates forced open = torchvision's ResNet",
             "tests/test_cbam.py"),
    "mobilenet": ("torchvision twin: same state_dict, identical outputs", "tests/test_mobilenet.py"),
    "mobilenet_v1": ("paper's parameters and mult-adds", "tests/test_mobilenet.py"),
    "shufflenet": ("torchvision twin: same state_dict, identical outputs", "tests/test_shufflenet.py"),
    "shufflenet_v1": ("parameters and MFLOPs of the authors' design", "tests/test_shufflenet.py"),
    "cifar": ("paper's parameter counts (0.27M … 1.7M, §4.2)", "tests/test_cifar_resnet.py"),
    "unet": ("paper's network: 31,030,658 parameters, 572² → 388²", "tests/test_unet.py"),
}

# Top-1 figures for models torchvision does not have: (value, source). From the papers'
# tables as recorded in the book's reference figures; "—" where the book has none.
PAPER_TOP1 = {
    "mobilenet_v1": (70.6, "paper"),
    "shufflenet_v1": (67.4, "paper: 32.6 % top-1 error at 1×, g = 3"),
    "se_resnet50": (77.63, "authors' released model"),
    # the ResNet paper's Table 6: CIFAR-10 test error 8.75 / 7.51 / 7.17 / 6.97 / 6.43 %
    "cifar_resnet(20)": (91.25, "CIFAR-10 test accuracy, ResNet paper Table 6"),
    "cifar_resnet(32)": (92.49, "CIFAR-10 test accuracy, ResNet paper Table 6"),
    "cifar_resnet(44)": (92.83, "CIFAR-10 test accuracy, ResNet paper Table 6"),
    "cifar_resnet(56)": (93.03, "CIFAR-10 test accuracy, ResNet paper Table 6"),
    "cifar_resnet(110)": (93.57, "CIFAR-10 test accuracy, ResNet paper Table 6"),
}


def _entry(name: str, build: Callable[[], nn.Module], size: Tuple[int, int, int],
           family: str, torchvision_name: Optional[str] = None, note: str = "") -> dict:
    return {"name": name, "build": build, "size": size, "family": family,
            "torchvision": torchvision_name, "note": note}


def models() -> List[dict]:
    """Every public model of `nets`, each at its native input (C, H, W)."""
    imagenet = (3, 224, 224)
    out = []
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                 "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"):
        out.append(_entry(name, getattr(nets, name), imagenet, "resnet", name))
    for name in ("se_resnet18", "se_resnet34", "se_resnet50", "se_resnet101", "se_resnet152"):
        out.append(_entry(name, getattr(nets, name), imagenet, "se"))
    for name in ("cbam_resnet18", "cbam_resnet34", "cbam_resnet50", "cbam_resnet101", "cbam_resnet152"):
        out.append(_entry(name, getattr(nets, name), imagenet, "cbam"))
    out.append(_entry("mobilenet_v1", nets.mobilenet_v1, imagenet, "mobilenet_v1"))
    for name in ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"):
        out.append(_entry(name, getattr(nets, name), imagenet, "mobilenet", name))
    out.append(_entry("shufflenet_v1", nets.shufflenet_v1, imagenet, "shufflenet_v1", note="g = 3, 1×"))
    for name in ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"):
        out.append(_entry(name, getattr(nets, name), imagenet, "shufflenet", name))
    for depth in (20, 32, 44, 56, 110):
        out.append(_entry(f"cifar_resnet({depth})", lambda d=depth: nets.cifar_resnet(d),
                          (3, 32, 32), "cifar", note="CIFAR-10, 10 classes"))
    out.append(_entry("cifar_plain(20)", lambda: nets.cifar_plain(20), (3, 32, 32), "cifar",
                      note="plain twin of ResNet-20"))
    out.append(_entry("UNet(1, 2, padded=False, norm_layer=None)",
                      lambda: nets.UNet(1, 2, padded=False, norm_layer=None), (1, 572, 572), "unet",
                      note="the paper's U-Net; output 388²"))
    out.append(_entry("UNet(3, 2)", lambda: nets.UNet(3, 2), (3, 256, 256), "unet",
                      note="padded, BN (Pytorch-UNet's layout)"))
    return out


def torchvision_top1(name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    weights = tvm.get_model_weights(name)
    values = " / ".join(f"{w.meta['_metrics']['ImageNet-1K']['acc@1']:.2f}" for w in weights)
    names = " / ".join(w.name.split("_")[-1] for w in weights)
    return f"{values} (torchvision {names})"


def static_row(entry: dict) -> dict:
    """Everything but the latency: cheap (built on the meta device, no weights)."""
    with torch.device("meta"):
        model = entry["build"]()
    c, h, w = entry["size"]
    if entry["torchvision"]:
        top1 = torchvision_top1(entry["torchvision"])
    elif entry["name"] in PAPER_TOP1:
        value, source = PAPER_TOP1[entry["name"]]
        top1 = f"{value:.2f} ({source})"
    else:
        top1 = "—"
    how, test = VERIFIED[entry["family"]]
    return {"model": entry["name"], "input": f"{c}×{h}×{w}", "params": nets.count_params(model),
            "gmacs": round(nets.count_macs(model, (1, c, h, w)) / 1e9, 3), "top1": top1,
            "verified": how, "test": test, "note": entry["note"]}


def measure(entry: dict) -> float:
    torch.manual_seed(0)
    model = entry["build"]().eval()
    x = torch.randn(1, *entry["size"])
    return nets.latency(model, x, min_run_time=1.0).median * 1e3


def render(data: dict) -> str:
    lines = [
        "# Model zoo",
        "",
        "Every model in `nets`, at its native input size. Generated by "
        "`python benchmarks/model_zoo.py` from the package itself (the numbers are not typed "
        "by hand); `tests/test_model_zoo.py` recomputes all but the latency and fails if this "
        "page is stale.",
        "",
        "- **params** from `nets.count_params`; **GMACs** (multiply-accumulates, FLOPs ÷ 2, "
        "as torchvision's \"GFLOPS\") from `nets.count_macs` at batch 1;",
        f"- **latency**: median of `nets.latency` at batch 1, eval mode, no autograd, "
        f"{data['threads']} threads, on {data['machine']} (torch {data['torch']}, "
        f"measured {data['measured']}); a CPU figure for comparing models with each other, "
        "not a promise for yours;",
        "- **top-1**: ImageNet-1K accuracy from torchvision's weight metadata (nothing is "
        "downloaded) where torchvision has the model — one figure per weight set, V1 is the "
        "original recipe — otherwise the paper's figure with its source (CIFAR-10 for the "
        "CIFAR nets), or — where the book has none; `nets` ships no weights of its own;",
        "- **verified**: how the test suite holds the model to its reference, and where.",
        "",
        "| model | input | params | GMACs | latency (ms) | reported top-1 (%) | verified | note |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in data["rows"]:
        latency = f"{row['latency_ms']:.1f}" if row.get("latency_ms") is not None else "—"
        lines.append(f"| `{row['model']}` | {row['input']} | {row['params']:,} | {row['gmacs']:.3f} | "
                     f"{latency} | {row['top1']} | {row['verified']} (`{row['test']}`) | {row['note']} |")
    lines.append("")
    return "\n".join(lines)


def machine() -> str:
    name = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name} ({os.cpu_count()} cores)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render", action="store_true", help="only rewrite the page from the stored JSON")
    args = parser.parse_args(argv)
    if not args.render:
        rows = []
        for entry in models():
            row = static_row(entry)
            row["latency_ms"] = round(measure(entry), 2)
            print(f"{row['model']:<45} {row['params']:>12,} {row['gmacs']:>8.3f} GMACs "
                  f"{row['latency_ms']:>9.1f} ms", flush=True)
            rows.append(row)
        data = {"machine": machine(),
                "threads": torch.get_num_threads(), "torch": torch.__version__.split("+")[0],
                "measured": dt.date.today().isoformat(), "rows": rows}
        RESULTS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    data = json.loads(RESULTS.read_text())
    PAGE.write_text(render(data))
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
