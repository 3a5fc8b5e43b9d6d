"""One training loop for every chapter: classification and segmentation.

:func:`fit` trains for a number of epochs (or optimizer steps), shows a tqdm progress bar
unless ``quiet=True``, and returns a :class:`History` with one record per epoch (loss,
metric, seconds, and the same on validation data) and one per optimizer step (the batch
loss and metric), so a chapter can plot either. The metric is accuracy for
classification and mean intersection-over-union for segmentation.

The same call scales up: ``amp="bf16"``/``"fp16"`` (mixed precision), ``channels_last=True``
and ``compile=True`` (``torch.compile``) are switches, off by default so that CPU results
stay bit-stable; launched under ``torchrun`` it trains on every process with
DistributedDataParallel (see :mod:`nets.distributed`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from contextlib import nullcontext
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import distributed as dist_utils
from .runtime import device as default_device

TASKS = ("classification", "segmentation")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class History:
    """What :func:`fit` measured. ``history["val_metric"]`` lists one value per epoch."""

    task: str
    epochs: List[Dict[str, float]] = field(default_factory=list)
    steps: List[Dict[str, float]] = field(default_factory=list)
    diverged_at: Optional[int] = None  # the step whose loss was inf or nan, if any

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.task == "classification" else "mean IoU"

    def __getitem__(self, key: str) -> List[float]:
        if self.epochs and key in self.epochs[0]:
            return [record[key] for record in self.epochs]
        if self.steps and key in self.steps[0]:
            return [record[key] for record in self.steps]
        known = sorted(set(self.epochs[0] if self.epochs else {}) | set(self.steps[0] if self.steps else {}))
        raise KeyError(f"{key!r} was not recorded; known keys: {known}")

    @property
    def seconds(self) -> float:
        """Total wall-clock training time."""
        return sum(record["seconds"] for record in self.epochs)

    def last(self, key: str, n: int = 1) -> float:
        """Mean of the last ``n`` recorded values of ``key`` (e.g. training error over the
        final 50 steps)."""
        values = self[key][-n:]
        return sum(values) / len(values)


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of samples whose highest logit is the target class."""
    return (logits.argmax(dim=1) == target).float().mean().item()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[t, p]`` counts items of true class ``t`` predicted as ``p`` (any shape of labels)."""
    index = target.reshape(-1) * num_classes + pred.reshape(-1)
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def mean_iou(cm: torch.Tensor) -> float:
    """Mean over classes of |pred ∩ true| / |pred ∪ true|, skipping classes that appear
    in neither prediction nor target."""
    cm = cm.double()
    intersection = cm.diag()
    union = cm.sum(0) + cm.sum(1) - intersection
    present = union > 0
    return (intersection[present] / union[present]).mean().item() if present.any() else float("nan")


class _Meter:
    """Accumulates loss and the task's metric over batches."""

    def __init__(self, task: str) -> None:
        self.task, self.loss_sum, self.count, self.correct, self.cm = task, 0.0, 0, 0, None

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float) -> float:
        n = target.shape[0]
        self.loss_sum += loss * n
        self.count += n
        pred = logits.argmax(dim=1)
        if self.task == "classification":
            correct = (pred == target).sum().item()
            self.correct += correct
            return correct / n
        cm = confusion_matrix(pred.cpu(), target.cpu(), logits.shape[1])
        self.cm = cm if self.cm is None else self.cm + cm
        return mean_iou(cm)

    def local_stats(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """This process's share of one step, as float64 numbers to sum over processes:
        ``[loss · n, n, not finite, correct]`` (classification) or ``[..., confusion matrix]``."""
        n = target.shape[0]
        head = [loss.double() * n, torch.tensor(float(n), device=loss.device, dtype=torch.float64),
                (~torch.isfinite(loss)).double()]
        pred = logits.argmax(dim=1)
        if self.task == "classification":
            tail = (pred == target).sum().double().reshape(1)
        else:
            num_classes = logits.shape[1]
            index = target.reshape(-1) * num_classes + pred.reshape(-1)
            tail = torch.bincount(index, minlength=num_classes**2).double()
        return torch.cat([torch.stack(head), tail])

    def add(self, total: torch.Tensor) -> Tuple[float, float]:
        """Add one step's stats summed over all processes; returns its loss and metric."""
        loss_sum, n = total[0].item(), int(total[1].item())
        self.loss_sum += loss_sum
        self.count += n
        if self.task == "classification":
            correct = int(total[3].item())
            self.correct += correct
            return loss_sum / n, correct / n
        size = int(round((total.numel() - 3) ** 0.5))
        cm = total[3:].round().long().cpu().reshape(size, size)
        self.cm = cm if self.cm is None else self.cm + cm
        return loss_sum / n, mean_iou(cm)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def metric(self) -> float:
        if self.task == "classification":
            return self.correct / max(self.count, 1)
        return mean_iou(self.cm) if self.cm is not None else float("nan")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, task: str = "classification",
             device: Optional[torch.device] = None,
             loss_fn: Optional[Callable] = None) -> Dict[str, float]:
    """Loss and metric of ``model`` (in eval mode) over ``loader``: ``{"loss", "metric"}``."""
    _check_task(task)
    device = device or next(model.parameters()).device
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    meter = _Meter(task)
    for inputs, target in loader:
        inputs, target = inputs.to(device), target.to(device)
        logits = model(inputs)
        meter.update(logits, target, loss_fn(logits, target).item())
    model.train(was_training)
    return {"loss": meter.loss, "metric": meter.metric}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Optional[Iterable] = None,
    *,
    epochs: int = 1,
    max_steps: Optional[int] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    lr: float = 0.05,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    loss_fn: Optional[Callable] = None,
    task: str = "classification",
    device: Optional[torch.device] = None,
    quiet: bool = False,
    desc: str = "train",
    amp: Optional[str] = None,
    channels_last: bool = False,
    compile: bool = False,
    seed: int = 0,
) -> History:
    """Train ``model`` and return its :class:`History`.

    * ``optimizer`` defaults to SGD with momentum 0.9, weight decay 5e-4 and ``lr``.
    * ``scheduler``, if given, is stepped after every optimizer step (build it with the
      total number of steps, e.g. ``OneCycleLR(opt, lr, total_steps=...)``).
    * ``max_steps`` stops training after that many optimizer steps, mid-epoch if needed,
      so runs with different batch counts can share one budget.
    * A loss that becomes inf or nan stops training; ``history.diverged`` tells.
    * Targets are class indices: ``(N,)`` for classification, ``(N, H, W)`` for
      segmentation; the model returns logits ``(N, C)`` or ``(N, C, H, W)``.

    Speed switches, all off by default (the chapters' stored CPU results depend on it):

    * ``amp="bf16"`` or ``"fp16"``: the forward pass and the loss run under
      ``torch.autocast`` in that type (weights and optimizer stay float32); ``"fp16"`` adds
      a ``torch.amp.GradScaler``, which scales the loss so small gradients do not
      underflow to 0 in float16 and skips steps whose gradients overflowed.
    * ``channels_last=True``: model and 4-D inputs in the NHWC memory layout, which
      tensor-core GPUs prefer for convolutions.
    * ``compile=True``: ``torch.compile`` the model (the first steps pay for compiling).

    Launched under ``torchrun`` with several processes (see :mod:`nets.distributed`): the
    model is wrapped in ``DistributedDataParallel``, ``train_loader`` (a ``DataLoader``)
    is shared out with a ``DistributedSampler`` seeded with ``seed`` so that each step's
    local batches together form one global batch of the loader's ``batch_size``, and the
    history holds the global batches' losses and metrics, identical on every process (only
    rank 0 shows the progress bar). Validation runs on every process with rank 0's buffers.
    """
    _check_task(task)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1 (or None), got {max_steps}")
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    device = dist_utils.local_device(device or default_device())
    with dist_utils.process_group(device) as distributed:
        return _fit(model, train_loader, val_loader, epochs=epochs, max_steps=max_steps,
                    optimizer=optimizer, lr=lr, scheduler=scheduler, loss_fn=loss_fn, task=task,
                    device=device, quiet=quiet, desc=desc, amp=amp, channels_last=channels_last,
                    compile=compile, seed=seed, distributed=distributed)


def _fit(model, train_loader, val_loader, *, epochs, max_steps, optimizer, lr, scheduler, loss_fn,
         task, device, quiet, desc, amp, channels_last, compile, seed, distributed) -> History:
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    train_model = model
    if distributed:
        train_loader = dist_utils.shard_loader(train_loader, seed)
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        train_model = torch.compile(train_model)
    dtype = AMP_DTYPES.get(amp)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    try:
        batches = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        batches = None
    total = batches * epochs if batches is not None else None
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    history = History(task)
    step = 0
    bar = tqdm(total=total, desc=desc, disable=quiet or not dist_utils.is_main(), unit="step",
               ncols=90, mininterval=1.0)
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            if distributed:
                train_loader.sampler.set_epoch(epoch)        # a new shuffle every epoch
            train_model.train()
            meter = _Meter(task)
            for inputs, target in train_loader:
                inputs, target = inputs.to(device), target.to(device)
                if channels_last and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with autocast():
                    logits = train_model(inputs)
                    loss = loss_fn(logits, target)
                if distributed:      # every process learns the global batch's numbers
                    total_stats = dist_utils.all_sum(meter.local_stats(logits.detach(), target, loss.detach()))
                    finite = total_stats[2].item() == 0
                else:
                    finite = bool(torch.isfinite(loss))
                if not finite:
                    # diverged: record it and stop; the caller decides what that means
                    history.diverged_at = step + 1
                    history.steps.append({"step": step + 1, "loss": math.inf, "metric": float("nan")})
                    break
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                if distributed:
                    batch_loss, batch_metric = meter.add(total_stats)
                else:
                    batch_loss = loss.item()
                    batch_metric = meter.update(logits.detach(), target, batch_loss)
                history.steps.append({"step": step, "loss": batch_loss, "metric": batch_metric})
                bar.update(1)
                bar.set_postfix(loss=f"{meter.loss:.3f}", metric=f"{meter.metric:.3f}", refresh=False)
                if max_steps is not None and step >= max_steps:
                    break
            record = {"epoch": epoch, "train_loss": meter.loss, "train_metric": meter.metric}
            if distributed:
                dist_utils.broadcast_buffers(model)          # rank 0's running statistics everywhere
            if val_loader is not None:
                with autocast():
                    val = evaluate(model, val_loader, task, device, loss_fn)
                record.update(val_loss=val["loss"], val_metric=val["metric"])
            seconds = time.perf_counter() - start
            record["seconds"] = dist_utils.all_max(seconds, device) if distributed else seconds
            history.epochs.append(record)
            if history.diverged or (max_steps is not None and step >= max_steps):
                break
    finally:
        bar.close()
    return history
