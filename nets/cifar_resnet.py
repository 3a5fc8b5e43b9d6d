"""The ResNet paper's CIFAR-10 networks and their plain twins: He, Zhang, Ren, Sun,
"Deep Residual Learning for Image Recognition", arXiv:1512.03385, §4.2.

A 3×3 convolution, then three stages of ``n`` basic blocks (two 3×3 convs each) on maps of
32×32, 16×16 and 8×8 pixels with ``width``, 2·width and 4·width filters (16/32/64 in the
paper), global average pooling and a fully connected layer: ``6n + 2`` weighted layers,
ResNet-20/32/44/56/110 for n = 3/5/7/9/18.

The paper's shortcuts here are *option A*: the identity, and where a stage halves the map
and doubles the channels, the identity subsampled by 2 with the new channels filled with
zeros. Option A has no parameters, so each ResNet has exactly as many parameters as its
plain twin (the same net without shortcuts): that is what makes Fig. 6 a fair comparison
of depth with and without residual learning. Option B uses a 1×1 projection + norm where
shapes change (as the ImageNet ResNets do).

The blocks are :class:`nets.resnet.BasicBlock`: option A is a parameter-free
``downsample`` module, the plain twin a block built with ``shortcut=False``.

Shapes: ``(N, in_channels, H, W) -> (N, num_classes)`` for any H, W ≥ 1;
:meth:`CifarResNet.forward_features` gives ``(N, 4·width, ceil(H/4), ceil(W/4))``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChecksInput, ConvNormAct, LayerFactory, check_image_batch
from .resnet import BasicBlock, conv3x3, init_resnet_weights

__all__ = ["ZeroPadShortcut", "make_shortcut", "CifarResNet", "cifar_resnet", "cifar_plain"]

_SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """The paper's option A shortcut: identity, subsampled by ``stride``, with zero channels
    appended up to ``out_channels``. No parameters.

        shortcut(x) = concat( x[:, :, ::stride, ::stride], zeros )

    ``x[..., ::s, ::s]`` keeps ``ceil(H/s)`` rows, exactly as many as a 3×3 conv with
    stride ``s`` and padding 1 produces, so the addition lines up for odd sizes too.
    The stride is applied whenever it is not 1, even if the channel count does not change:
    a bare identity would not match a stride-2 branch.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"a zero-padding shortcut can only add channels, not go from "
                             f"{in_channels} to {out_channels}; use option B (a projection)")
        if stride < 1:
            raise ValueError(f"stride must be ≥ 1, got {stride}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]            # (N, C_in, H/s, W/s)
        extra = self.out_channels - self.in_channels
        if extra:
            # F.pad pads from the last dimension backwards: (W, W, H, H, C, C).
            x = F.pad(x, (0, 0, 0, 0, 0, extra))                 # (N, C_out, H/s, W/s)
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int = 1,
                  norm_layer: Optional[LayerFactory] = None) -> Optional[nn.Module]:
    """The shortcut of a block going from ``in_channels`` to ``out_channels`` with ``stride``:
    ``None`` (identity) when the shape does not change, else option ``"A"``
    (:class:`ZeroPadShortcut`) or ``"B"`` (1×1 conv with ``stride`` + norm)."""
    if kind not in _SHORTCUTS:
        raise ValueError(f"unknown shortcut option {kind!r}; choose 'A' (zero padding, no "
                         "parameters) or 'B' (1x1 projection where shapes change)")
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return ConvNormAct(in_channels, out_channels, 1, stride,
                       norm_layer=norm_layer or nn.BatchNorm2d, activation_layer=None)


def _blocks_per_stage(depth: int) -> int:
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNets have depth 6n+2 with n ≥ 1 blocks per stage "
                         f"(8, 14, 20, 26, 32, 44, 56, 110, ...); got {depth!r}")
    return (depth - 2) // 6


class CifarResNet(ChecksInput, nn.Module):
    """ResNet-(6n+2) for small images (module docstring), or its plain twin with
    ``shortcut=None``.

    ``shortcut``: ``"A"`` (zero-padding identity), ``"B"`` (projection where shapes change)
    or ``None`` (no shortcuts at all: the plain net). ``norm_layer`` and ``attn_layer`` are
    callables taking a channel count, passed to every block as in :class:`nets.resnet.ResNet`.
    """

    def __init__(
        self,
        depth: int,
        *,
        width: int = 16,
        shortcut: Optional[str] = "A",
        num_classes: int = 10,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        norm_layer: Optional[LayerFactory] = None,
        attn_layer: Optional[LayerFactory] = None,
    ) -> None:
        super().__init__()
        n = _blocks_per_stage(depth)
        if shortcut is not None and shortcut not in _SHORTCUTS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; choose 'A', 'B' or None (plain)")
        if shortcut is None and zero_init_residual:
            raise ValueError("zero_init_residual needs shortcuts: a plain block with a zeroed "
                             "last norm would output zeros")
        if width < 1:
            raise ValueError(f"width must be ≥ 1, got {width}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.depth = depth
        self.in_channels = in_channels
        self.shortcut = shortcut
        self._norm_layer = norm_layer
        self._attn_layer = attn_layer

        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(width, width, n, stride=1)
        self.layer2 = self._make_stage(width, 2 * width, n, stride=2)
        self.layer3 = self._make_stage(2 * width, 4 * width, n, stride=2)
        self.num_features = 4 * width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.num_features, num_classes)

        init_resnet_weights(self, zero_init_residual)
        self.skip_nested_checks()

    def _make_stage(self, in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        stage = []
        for i in range(blocks):
            block_in, block_stride = (in_channels, stride) if i == 0 else (out_channels, 1)
            downsample = None
            if self.shortcut is not None:
                downsample = make_shortcut(self.shortcut, block_in, out_channels, block_stride,
                                           self._norm_layer)
            stage.append(BasicBlock(block_in, out_channels, block_stride, downsample,
                                    norm_layer=self._norm_layer, attn_layer=self._attn_layer,
                                    shortcut=self.shortcut is not None))
        return nn.Sequential(*stage)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the three stages: ``(N, C, H, W) -> (N, 4·width, ceil(H/4), ceil(W/4))``."""
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.relu(self.bn1(self.conv1(x)))    # (N, w, 32, 32) for CIFAR
        x = self.layer1(x)                        # (N, w, 32, 32)
        x = self.layer2(x)                        # (N, 2w, 16, 16)
        return self.layer3(x)                     # (N, 4w, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = torch.flatten(self.avgpool(x), 1)     # (N, 4w)
        return self.fc(x)                         # (N, num_classes)


def cifar_resnet(
    depth: int,
    *,
    width: int = 16,
    shortcut: str = "A",
    num_classes: int = 10,
    in_channels: int = 3,
    zero_init_residual: bool = False,
    norm_layer: Optional[LayerFactory] = None,
    attn_layer: Optional[LayerFactory] = None,
) -> CifarResNet:
    """ResNet-``depth`` for CIFAR (depth = 6n+2). With option A shortcuts and width 16,
    ResNet-20/32/44/56/110 have 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962
    parameters (paper: 0.27M ... 1.7M; test error 8.75 ... 6.43 % on CIFAR-10)."""
    if shortcut not in _SHORTCUTS:
        raise ValueError(f"unknown shortcut option {shortcut!r}; choose 'A' or 'B' "
                         "(cifar_plain builds the net without shortcuts)")
    return CifarResNet(depth, width=width, shortcut=shortcut, num_classes=num_classes,
                       in_channels=in_channels, zero_init_residual=zero_init_residual,
                       norm_layer=norm_layer, attn_layer=attn_layer)


def cifar_plain(
    depth: int,
    *,
    width: int = 16,
    num_classes: int = 10,
    in_channels: int = 3,
    norm_layer: Optional[LayerFactory] = None,
    attn_layer: Optional[LayerFactory] = None,
) -> CifarResNet:
    """Plain-``depth``: :func:`cifar_resnet` without shortcuts, exactly as many parameters
    as the option-A ResNet. In the paper's Fig. 6 its training error *rises* with depth
    (plain-56 worse than plain-20): the degradation problem."""
    return CifarResNet(depth, width=width, shortcut=None, num_classes=num_classes,
                       in_channels=in_channels, norm_layer=norm_layer, attn_layer=attn_layer)
