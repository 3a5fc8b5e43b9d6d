"""Counting a model's size and cost: parameters and multiply-accumulates (MACs).

MACs are counted by torch itself (``torch.utils.flop_counter.FlopCounterMode``), which
knows the cost of convolutions, matrix products and attention: no hand-written formulas
to get wrong. One multiply-accumulate is two floating-point operations, so
``MACs = FLOPs / 2``; the "GFLOPS" torchvision lists for its weights are GMACs in this sense.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (``model.parameters()`` yields a shared tensor once; buffers
    such as BN running statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Union[Sequence[int], torch.Size]) -> int:
    """Multiply-accumulates of one forward pass on a zero tensor of ``input_size``.

    ``input_size`` is the full shape including the batch, e.g. ``(1, 3, 224, 224)``.
    The model is run once in eval mode under ``torch.no_grad`` on the device of its
    parameters and put back in the mode it was in.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) < 2 or any(s <= 0 for s in size):
        raise ValueError(f"input_size must be a full shape with batch, e.g. (1, 3, 224, 224), got {size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
