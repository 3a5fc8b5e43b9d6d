"""The training recipe the sweep scripts of chapters 3 to 6 share, written once.

SGD with momentum 0.9 and weight decay 5e-4, PyTorch's ``OneCycleLR`` to the peak rate over
``steps`` steps (its defaults: 30 % warm-up, momentum cycled 0.95 → 0.85), shuffled batches
drawn with ``generator``, trained with :func:`nets.fit` on the CPU. The caller seeds first
(``generator = nets.seed_everything(seed)``) and builds the model after, so the seed fixes the
initialisation and the order of the batches alike.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

import nets


def one_cycle_run(model: torch.nn.Module, train_set, val_loader, *, lr: float, steps: int,
                  batch_size: int, generator: torch.Generator):
    """Train ``model`` in place; returns ``(history, seconds)``."""
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    start = time.perf_counter()
    history = nets.fit(model, loader, val_loader, epochs=-(-steps // len(loader)), max_steps=steps,
                       optimizer=optimizer, scheduler=schedule, device=torch.device("cpu"), quiet=True)
    return history, time.perf_counter() - start
