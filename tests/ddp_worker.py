"""Run by tests/test_distributed.py, alone or under `torchrun --nproc_per_node=K`.

    python tests/ddp_worker.py OUT_DIR [--sync-bn] [--fail-at STEP]

Trains a small net on a Shapes set with nets.fit (global batch 32, no shuffling) and saves
this process's history and final weights to OUT_DIR/rank{R}.pt.
"""

import argparse
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader

import nets


def small_net(batchnorm: bool) -> nn.Module:
    norm = [nn.BatchNorm2d(8)] if batchnorm else []
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *norm, nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


class FailingLoss(nn.CrossEntropyLoss):
    """Raises on one process at a given step: the other must not hang."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.calls, self.step = 0, step

    def forward(self, logits, target):
        self.calls += 1
        if self.calls == self.step and int(os.environ.get("RANK", "0")) == 1:
            raise RuntimeError("worker 1 fails on purpose")
        return super().forward(logits, target)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--fail-at", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cuda: each process on its own GPU (NCCL)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    nets.seed_everything(0)
    data = nets.Shapes(256, image_size=12, seed=0)
    val = DataLoader(nets.Shapes(64, image_size=12, split="val", seed=0), batch_size=32)
    model = small_net(args.batchnorm or args.sync_bn)
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    loss_fn = FailingLoss(args.fail_at) if args.fail_at else None
    history = nets.fit(model, DataLoader(data, batch_size=32), val, epochs=2, lr=0.05,
                       loss_fn=loss_fn, quiet=True, device=torch.device(args.device))
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"history": {"epochs": history.epochs, "steps": history.steps},
                "state": {k: v.cpu() for k, v in model.state_dict().items()},
                "init": {k: v.cpu() for k, v in init.items()}}, os.path.join(args.out, f"rank{rank}.pt"))


if __name__ == "__main__":
    sys.exit(main())
