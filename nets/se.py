"""Squeeze-and-Excitation: Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks",
arXiv:1709.01507.

A convolution mixes channels only through its learned filters; it cannot say "for *this*
image, channel 17 matters more". An SE block learns such a per-image, per-channel weight:

    squeeze     z = mean over (H, W) of x                      (N, C, 1, 1)
    excitation  s = sigmoid(W2 · relu(W1 · z + b1) + b2)        (N, C, 1, 1), each in (0, 1)
    scale       y = x * s                                       (N, C, H, W)

``W1`` squeezes C channels down to about C / r (r = ``reduction``, 16 in the paper) and
``W2`` restores them, so the block costs about 2C²/r parameters. SE-ResNet puts one block in
every residual block, after the last norm and before the residual addition: in ``nets`` that
is the ``attn_layer`` slot of :class:`nets.resnet.ResNet`, so an SE-ResNet is a ResNet built
with ``attn_layer=SqueezeExcitation`` and nothing else.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import torch
from torch import nn

from .layers import ChecksInput, LayerFactory, check_image_batch, make_divisible
from .resnet import ResNet, attention_resnet
from .weights import Weights, make_builder

__all__ = [
    "SqueezeExcitation",
    "se_resnet18",
    "se_resnet34",
    "se_resnet50",
    "se_resnet101",
    "se_resnet152",
]

_SQUEEZE_POOLS = ("avg", "max")


class SqueezeExcitation(ChecksInput, nn.Module):
    """Channel attention by squeeze (global pooling) and excitation (a two-layer gate).

    The two fully connected layers are written as 1×1 convolutions with bias (``fc1``,
    ``fc2``), which act on the pooled ``(N, C, 1, 1)`` tensor directly and keep the
    parameter names of timm and torchvision.

    Width of the bottleneck: ``make_divisible(channels / reduction, divisor)``, i.e. C / r
    rounded to a multiple of ``divisor`` (8 by default) and never below it. This is timm's
    ``SEModule`` rule and what the SE-ResNet parameter counts in the reference imply
    (SE-ResNet-18's 64-channel blocks squeeze to 8, not 64 // 16 = 4). It never reaches 0,
    which plain ``channels // reduction`` does for fewer than ``reduction`` channels (a
    zero-width layer turns the gate into a constant: sigmoid(b2), or exactly 0.5 without
    biases). For very narrow inputs (e.g. 4 channels) the rounded "squeeze" is wider than the
    input; that is the price of never collapsing.

    ``gate_layer`` and ``pool`` select the variants of the paper's ablations (TPAMI / arXiv v4,
    Tables 11-12: sigmoid 22.28 % top-1 error, tanh 23.00, ReLU 23.47; "avg" 22.28 vs "max"
    22.57 on SE-ResNet-50). Those ablation nets had bias-free excitation layers and a longer
    schedule with label smoothing; this module keeps the biases of the released models.

    Reading the gates: ``gate`` is a module of its own, so a forward hook on it receives ``s``
    (``(N, C, 1, 1)``) on every forward pass without changing the model, e.g.
    ``block.attn.gate.register_forward_hook(lambda m, inp, s: store.append(s))``.

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``, any H, W ≥ 1.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        divisor: int = 8,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        pool: str = "avg",
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"SqueezeExcitation needs at least 1 channel, got {channels}")
        if reduction <= 0:
            raise ValueError(f"reduction must be positive, got {reduction}")
        if not isinstance(divisor, int) or divisor < 1:
            raise ValueError("divisor must be a positive integer (1 turns the rounding off), "
                             f"got {divisor!r}")
        if pool not in _SQUEEZE_POOLS:
            raise ValueError(f"unknown squeeze pool {pool!r}; choose one of {_SQUEEZE_POOLS}")
        self.channels = channels
        self.pool = pool
        self.squeeze_channels = make_divisible(channels / reduction, divisor)
        self.fc1 = nn.Conv2d(channels, self.squeeze_channels, kernel_size=1, bias=True)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(self.squeeze_channels, channels, kernel_size=1, bias=True)
        self.gate = gate_layer()

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The excitation ``s``: one weight per image and channel, shape ``(N, C, 1, 1)``."""
        if self.pool == "avg":
            z = x.mean(dim=(2, 3), keepdim=True)                  # (N, C, 1, 1)
        else:
            z = x.amax(dim=(2, 3), keepdim=True)                  # (N, C, 1, 1)
        return self.gate(self.fc2(self.act(self.fc1(z))))        # (N, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.channels, owner="SqueezeExcitation")
        # Broadcasting stretches s (N, C, 1, 1) over H × W, as s.expand_as(x) would.
        return x * self.channel_weights(x)                        # (N, C, H, W)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, squeeze_channels={self.squeeze_channels}, pool={self.pool!r}"


def _se_resnet(arch: str, *, weights: Optional[Weights], progress: bool, num_classes: int,
               reduction: float = 16, **kwargs: Any) -> ResNet:
    return attention_resnet(arch, partial(SqueezeExcitation, reduction=reduction), "SE-ResNet",
                            weights=weights, progress=progress, num_classes=num_classes, **kwargs)


_OPTIONS = ("``reduction`` (r, default 16) sets every SE block's squeeze; other keywords go to "
            ":class:`nets.resnet.ResNet`. No pretrained weights (torchvision has none).")
se_resnet18 = make_builder("se_resnet18", _se_resnet, f"""SE-ResNet-18: ResNet-18 with an SE block in
    each of its 8 basic blocks (11,779,624 parameters at 1000 classes). {_OPTIONS}""", arch="resnet18")
se_resnet34 = make_builder("se_resnet34", _se_resnet, f"""SE-ResNet-34: ResNet-34 with SE in each of
    its 16 basic blocks (21,960,416 parameters). {_OPTIONS}""", arch="resnet34")
se_resnet50 = make_builder("se_resnet50", _se_resnet, f"""SE-ResNet-50: ResNet-50 ("V1.5", stride on
    the 3×3 conv as in torchvision) with SE in each of its 16 bottlenecks (28,088,024
    parameters, +2,530,992 over ResNet-50; paper: ~2.5M on ~25M, Table 10: 28.1M vs 25.6M;
    23.29 % vs 24.80 % top-1 error). {_OPTIONS}""",
                           arch="resnet50")
se_resnet101 = make_builder("se_resnet101", _se_resnet, f"""SE-ResNet-101: ResNet-101 with SE in each
    of its 33 bottlenecks (49,326,872 parameters). {_OPTIONS}""", arch="resnet101")
se_resnet152 = make_builder("se_resnet152", _se_resnet, f"""SE-ResNet-152: ResNet-152 with SE in each
    of its 50 bottlenecks (66,821,848 parameters). {_OPTIONS}""", arch="resnet152")
