"""Small parts every model file builds on: conv-norm-activation, channel rounding, input checks."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

ModuleFactory = Callable[..., nn.Module]


class ConvNormAct(nn.Sequential):
    """``Conv2d → norm → activation`` as an ``nn.Sequential`` (indices 0, 1, 2).

    Pass ``norm_layer=None`` or ``activation_layer=None`` to leave a part out; the
    remaining parts keep consecutive indices, exactly like torchvision's
    ``Conv2dNormActivation``, so state_dicts line up. Padding defaults to "same" for odd
    kernels; the conv has no bias when a norm follows (the norm's shift replaces it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Optional[int] = None,
        groups: int = 1,
        norm_layer: Optional[ModuleFactory] = nn.BatchNorm2d,
        activation_layer: Optional[ModuleFactory] = nn.ReLU,
        dilation: int = 1,
        inplace: Optional[bool] = True,
        bias: Optional[bool] = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                  dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            kwargs = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**kwargs))
        super().__init__(*layers)
        self.out_channels = out_channels


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never below 90 % of it.

    The rule MobileNet V2/V3 (and torchvision's ``_make_divisible``) apply after a width
    multiplier: hardware likes multiples of 8, and rounding down by more than 10 % would
    shrink the layer noticeably.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


Size2d = Union[int, Tuple[int, int]]


def check_image_batch(
    x: torch.Tensor,
    in_channels: int,
    min_size: Size2d = 1,
    owner: str = "model",
) -> None:
    """Raise a ``ValueError`` unless ``x`` is an ``(N, in_channels, H, W)`` batch that is
    large enough: ``H >= min_size[0]`` and ``W >= min_size[1]``.

    Models call this first thing in ``forward`` so a wrong input fails with a message
    that says what was expected, before any layer runs.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{owner} expects a batch of images shaped (N, {in_channels}, H, W), got a "
            f"{x.dim()}-d tensor of shape {tuple(x.shape)}"
            + (" (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""))
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{owner} expects {in_channels} input channels, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})")
    min_h, min_w = (min_size, min_size) if isinstance(min_size, int) else min_size
    h, w = x.shape[-2:]
    if h < min_h or w < min_w:
        raise ValueError(
            f"{owner} needs images of at least {min_h}x{min_w} pixels for its downsampling, "
            f"got {h}x{w}")


def as_pair(size: Size2d | Sequence[int]) -> Tuple[int, int]:
    """``7 -> (7, 7)``; ``(224, 160) -> (224, 160)``."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)
