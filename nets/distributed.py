"""Several processes, one training run: PyTorch's own engine, torchrun + DistributedDataParallel.

``torchrun --nproc_per_node=K script.py`` starts K copies of a script and tells each who it is
through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT``).
:func:`nets.fit` reads that environment and, when there is more than one process:

1. joins the process group (:func:`process_group`: NCCL between GPUs, gloo on CPUs), each
   process on its own GPU (``cuda:LOCAL_RANK``) when there are GPUs;
2. wraps the model in ``DistributedDataParallel``: every process holds a full copy, computes
   gradients on its own share of each batch, and DDP averages the gradients across
   processes during ``backward`` — so every copy takes the same optimizer step;
3. gives each process its share of the data (:func:`shard_loader`): a
   ``DistributedSampler`` splits every *global* batch of the original loader's
   ``batch_size`` into ``world_size`` local batches, reshuffled each epoch
   (``set_epoch``);
4. sums the losses, counts and confusion matrices of all processes (:func:`all_sum`), so
   the history is that of the global batches — identical on every process.

Gradient averaging makes K processes with local batches of ``B/K`` equal to one process with
batches of ``B`` (the mean of K equal-sized local means is the global mean), up to float
rounding — for models without batch statistics. BatchNorm normalises each local batch
separately; ``nn.SyncBatchNorm.convert_sync_batchnorm(model)`` makes it use the global batch.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

__all__ = ["launched", "rank", "world_size", "is_main", "process_group", "local_device",
           "shard_loader", "all_sum", "all_max", "broadcast_buffers"]

#: How long a collective waits for the other processes before it fails (not hangs).
TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("NETS_DIST_TIMEOUT", "300")))


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0: the process that shows progress and writes files."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, ``cuda`` without an index means this process's GPU, ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[bool]:
    """Join the process group for the duration of the block if torchrun started several
    processes and no group exists yet; leave it again afterwards, also on error, so that a
    failing run ends instead of leaving the other processes waiting. Yields whether this
    process is part of a multi-process run."""
    created = False
    if launched() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
        created = True
    try:
        yield dist.is_initialized() and dist.get_world_size() > 1
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def shard_loader(loader: DataLoader, seed: int = 0) -> DataLoader:
    """This process's share of ``loader``: the same dataset, a ``DistributedSampler``
    (shuffled if the loader shuffled, with ``seed``; call ``sampler.set_epoch(e)`` every
    epoch) and a local batch of ``batch_size / world_size``, so that the K local batches
    of one step together form one global batch of the original size."""
    if not isinstance(loader, DataLoader):
        raise ValueError(f"under torchrun, fit needs a torch DataLoader to share out among the "
                         f"processes, got {type(loader).__name__}")
    world = world_size()
    if loader.batch_size is None or loader.batch_size % world:
        raise ValueError(f"the global batch size ({loader.batch_size}) must be divisible by the "
                         f"number of processes ({world}): each takes batch_size / {world}")
    if not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        raise ValueError("under torchrun, fit shards loaders built with shuffle=True or False; "
                         f"a {type(loader.sampler).__name__} cannot be shared out")
    sampler = DistributedSampler(loader.dataset, num_replicas=world, rank=rank(),
                                 shuffle=isinstance(loader.sampler, RandomSampler), seed=seed,
                                 drop_last=loader.drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // world, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last)


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Elementwise sum over all processes (a copy; float64 keeps counts exact)."""
    values = values.detach().clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_max(value: float, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm's running statistics). DDP does this
    before each training forward; the forward then updates them with the local batch, so
    after training the copies differ unless broadcast once more."""
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
