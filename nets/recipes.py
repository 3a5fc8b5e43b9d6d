"""Training recipes the book's experiments share, written once.

The chapters call them, the sweep scripts under ``benchmarks/experiments/`` call them, and
``python -m nets.run`` runs them at paper scale (on a GPU, or several through ``torchrun``) —
one copy of each recipe, so a result at laptop scale and one at paper scale differ only in
their settings.

* :func:`one_cycle_run` — SGD with momentum 0.9 and weight decay, PyTorch's ``OneCycleLR``
  to a peak rate (Smith & Topin 2018): the book's short-budget recipe.
* :func:`step_decay_run` — SGD with the rate divided by 10 at fixed fractions of the run:
  the ResNet paper's CIFAR-10 recipe (lr 0.1, ÷10 at 32k and 48k of 64k iterations).
* :func:`degradation_net` — the nets of the degradation experiment (chapter 1) by name:
  ``"plain-20"``, ``"ResNet-56"``.

The caller seeds first (``generator = nets.seed_everything(seed)``) and builds the model
after, so the seed fixes the initialisation and the order of the batches alike.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cifar_resnet import cifar_plain, cifar_resnet
from .train import History, fit

__all__ = ["one_cycle_run", "step_decay_run", "degradation_net"]


def _sgd_run(model: nn.Module, train_set: Dataset, val_loader, *, lr: float, steps: int,
             batch_size: int, generator: torch.Generator, weight_decay: float,
             make_schedule: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler],
             drop_last: bool, num_workers: int, device: Optional[torch.device], quiet: bool,
             fit_options: dict) -> Tuple[History, float]:
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                        generator=generator, num_workers=num_workers)
    if len(loader) == 0:
        raise ValueError(f"the training set ({len(train_set)} items) does not fill one batch of "
                         f"{batch_size}{' (drop_last=True)' if drop_last else ''}")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    start = time.perf_counter()
    history = fit(model, loader, val_loader, epochs=math.ceil(steps / len(loader)), max_steps=steps,
                  optimizer=optimizer, scheduler=make_schedule(optimizer), device=device,
                  quiet=quiet, **fit_options)
    return history, time.perf_counter() - start


def one_cycle_run(model: nn.Module, train_set: Dataset, val_loader, *, lr: float, steps: int,
                  batch_size: int, generator: torch.Generator, pct_start: float = 0.3,
                  cycle_momentum: bool = True, weight_decay: float = 5e-4, drop_last: bool = False,
                  num_workers: int = 0, device: Optional[torch.device] = None, quiet: bool = True,
                  **fit_options) -> Tuple[History, float]:
    """Train ``model`` in place for ``steps`` SGD steps on shuffled batches of ``train_set``
    (drawn with ``generator``), the rate rising to ``lr`` over the first ``pct_start`` of the
    steps and annealing to almost 0 (``OneCycleLR``; ``cycle_momentum`` also cycles the
    momentum 0.95 → 0.85 and back). Returns ``(history, seconds)``; ``fit_options`` go to
    :func:`nets.fit` (``amp``, ``channels_last``, ``compile``...)."""
    return _sgd_run(model, train_set, val_loader, lr=lr, steps=steps, batch_size=batch_size,
                    generator=generator, weight_decay=weight_decay,
                    make_schedule=lambda opt: torch.optim.lr_scheduler.OneCycleLR(
                        opt, lr, total_steps=steps, pct_start=pct_start, cycle_momentum=cycle_momentum),
                    drop_last=drop_last, num_workers=num_workers, device=device, quiet=quiet,
                    fit_options=fit_options)


def step_decay_run(model: nn.Module, train_set: Dataset, val_loader, *, lr: float, steps: int,
                   batch_size: int, generator: torch.Generator,
                   milestones: Sequence[float] = (0.5, 0.75), weight_decay: float = 1e-4,
                   drop_last: bool = False, num_workers: int = 0,
                   device: Optional[torch.device] = None, quiet: bool = True,
                   **fit_options) -> Tuple[History, float]:
    """Train ``model`` in place for ``steps`` SGD steps at ``lr``, divided by 10 at each
    fraction of the run in ``milestones`` — the ResNet paper's CIFAR-10 schedule is
    ``lr=0.1``, ``steps=64_000``, ``milestones=(0.5, 0.75)`` (32k and 48k), weight decay
    1e-4, batch 128. Returns ``(history, seconds)``."""
    marks = [round(f * steps) for f in milestones]
    return _sgd_run(model, train_set, val_loader, lr=lr, steps=steps, batch_size=batch_size,
                    generator=generator, weight_decay=weight_decay,
                    make_schedule=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, marks, 0.1),
                    drop_last=drop_last, num_workers=num_workers, device=device, quiet=quiet,
                    fit_options=fit_options)


def degradation_net(name: str, width: int = 16, num_classes: int = 10,
                    zero_init_residual: bool = False) -> nn.Module:
    """``"plain-<depth>"`` or ``"ResNet-<depth>"`` (depth = 6n + 2): the CIFAR nets of the
    ResNet paper's §4.2 (``nets.cifar_plain`` / ``nets.cifar_resnet``, option A shortcuts)
    at base ``width`` (16 in the paper). ``zero_init_residual`` starts every residual branch
    at 0 (chapter 1's runs; the paper does not)."""
    kind, _, depth = name.partition("-")
    if kind not in ("plain", "ResNet") or not depth.isdigit():
        raise ValueError(f"a degradation net is named 'plain-<depth>' or 'ResNet-<depth>', got {name!r}")
    if kind == "plain":
        return cifar_plain(int(depth), width=width, num_classes=num_classes)
    return cifar_resnet(int(depth), width=width, num_classes=num_classes,
                        zero_init_residual=zero_init_residual)
