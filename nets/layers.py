"""Small parts every model file builds on: conv-norm-activation, channel rounding, the one
way to inject a layer, and input checks."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

#: A callable that builds a layer: the one way to inject a part (norm, activation,
#: attention) into a block. Norm and attention factories are called with a channel count
#: (``nn.BatchNorm2d``, ``partial(nn.GroupNorm, 8)``, ``nets.SqueezeExcitation``),
#: activation factories with no argument (``nn.ReLU``, ``partial(nn.ReLU, inplace=True)``,
#: ``nn.GELU``). ``None`` in a slot that accepts it means "leave the part out".
LayerFactory = Callable[..., nn.Module]

Size2d = Union[int, Tuple[int, int]]


class ConvNormAct(nn.Sequential):
    """``Conv2d → norm → activation`` as an ``nn.Sequential`` (indices 0, 1, 2).

    Pass ``norm_layer=None`` or ``activation_layer=None`` to leave a part out; the
    remaining parts keep consecutive indices, exactly like torchvision's
    ``Conv2dNormActivation``, so state_dicts line up. ``norm_layer(out_channels)`` and
    ``activation_layer()`` are called as they are: for an in-place activation pass
    ``partial(nn.ReLU, inplace=True)`` (torchvision adds ``inplace=True`` itself, which
    breaks activations without that argument, e.g. ``nn.GELU``). Padding defaults to
    "same" for odd kernels; the conv has no bias when a norm follows (the norm's shift
    replaces it).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, ⌈H/stride⌉, ⌈W/stride⌉)`` for the
    default padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Optional[int] = None,
        groups: int = 1,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
        activation_layer: Optional[LayerFactory] = nn.ReLU,
        dilation: int = 1,
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
            layers.append(activation_layer())
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


def check_width_mult(width_mult: float) -> None:
    """A width multiplier (MobileNet's α, ShuffleNet's s×) must be a positive number."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValueError(f"width_mult must be a positive number, got {width_mult!r}")


def check_image_batch(
    x: torch.Tensor,
    channels: Optional[int] = None,
    min_size: Size2d = 1,
    owner: str = "model",
) -> None:
    """Raise a ``ValueError`` unless ``x`` is an ``(N, C, H, W)`` batch with
    ``C == channels`` (any C when ``channels`` is None), ``H >= min_size[0]`` and
    ``W >= min_size[1]``.

    Models call this first thing in ``forward`` so a wrong input fails with a message
    that says what was expected, before any layer runs.
    """
    expected = f"(N, {'C' if channels is None else channels}, H, W)"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner} expects a torch.Tensor shaped {expected}, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{owner} expects a batch of images shaped {expected}, got a "
            f"{x.dim()}-d tensor of shape {tuple(x.shape)}"
            + (" (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""))
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{owner} expects {channels} input channels, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})")
    min_h, min_w = as_pair(min_size)
    h, w = x.shape[-2:]
    if h < min_h or w < min_w:
        raise ValueError(
            f"{owner} needs images of at least {min_h}x{min_w} pixels for its downsampling, "
            f"got {h}x{w}")


class ChecksInput:
    """Mixin for modules that validate their input with :func:`check_image_batch`.

    Such a module checks its input when it is called on its own. Nested inside another
    checking module (an SE block inside a ResNet, the channel gate inside CBAM) its input
    is a tensor the outer module produced from an input it already checked, so the outer
    module's constructor calls :meth:`skip_nested_checks` and each tensor is validated once
    per forward, at the entry.
    """

    check_input: bool = True

    def skip_nested_checks(self) -> None:
        for module in self.modules():  # type: ignore[attr-defined]
            if module is not self and isinstance(module, ChecksInput):
                module.check_input = False


def as_pair(size: Size2d | Sequence[int]) -> Tuple[int, int]:
    """``7 -> (7, 7)``; ``(224, 160) -> (224, 160)``."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)
