"""MobileNets V1, V2 and V3: convolutions split into cheap parts.

* V1 — Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", arXiv:1704.04861. A 3×3 convolution from M to N channels on a D×D map costs
  ``9·M·N·D²`` multiply-accumulates; a *depthwise separable* one — a 3×3 depthwise conv (one
  filter per channel) followed by a 1×1 pointwise conv — costs ``9·M·D² + M·N·D²``, a fraction
  ``1/N + 1/9`` of it: 8 to 9 times cheaper for 3×3 kernels.
* V2 — Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
  arXiv:1801.04381. Expand a thin tensor ``t`` times with a 1×1 conv, filter it depthwise,
  project it back with a *linear* 1×1 conv (no ReLU: it would destroy information in the
  narrow tensor) and add the shortcut between the thin ends.
* V3 — Howard et al., "Searching for MobileNetV3", arXiv:1905.02244. V2's block found by
  architecture search, with squeeze-and-excitation in some blocks and the hard-swish
  non-linearity ``h-swish(x) = x · ReLU6(x + 3) / 6``.

V2 and V3 use torchvision's attribute names (``features`` / ``classifier``, blocks with
``.conv`` in V2 and ``.block`` in V3), so ``load_state_dict(torchvision_model.state_dict(),
strict=True)`` works and the builders' ``weights=`` argument loads torchvision's ImageNet
checkpoints. Layout: helpers → blocks → models → builders; architectures are literal tables.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import ChecksInput, ConvNormAct, LayerFactory, check_image_batch, check_width_mult, make_divisible
from .se import SqueezeExcitation
from .weights import Weights, check_num_classes, load_torchvision_weights

__all__ = [
    "DepthwiseSeparableConv",
    "MobileNetV1",
    "InvertedResidual",
    "MobileNetV2",
    "InvertedResidualV3",
    "MobileNetV3",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]


# --------------------------------------------------------------------------- helpers

def _check_pretrained_width(weights: Optional[Weights], width_mult: float) -> None:
    if weights is not None and width_mult != 1.0:
        raise ValueError(f"the pretrained weights are for width_mult=1.0, got width_mult={width_mult}")


def _init_weights(model: nn.Module) -> None:
    """The initialisation torchvision uses for its MobileNets: He-normal (fan-out) convs,
    BN scale 1 and shift 0, small normal classifier weights, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- MobileNet V1

class DepthwiseSeparableConv(nn.Sequential):
    """One MobileNet V1 layer pair (paper Fig. 3): ``depthwise`` 3×3 conv (``groups = C_in``,
    carries the stride) → BN → ReLU, then ``pointwise`` 1×1 conv → BN → ReLU.

    Cost per output pixel: ``9·C_in + C_in·C_out`` MACs instead of ``9·C_in·C_out``.
    Shapes: ``(N, C_in, H, W) -> (N, C_out, ⌈H/s⌉, ⌈W/s⌉)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 norm_layer: LayerFactory = nn.BatchNorm2d,
                 activation_layer: LayerFactory = nn.ReLU) -> None:
        super().__init__()
        self.add_module("depthwise", ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels,
                                                 norm_layer=norm_layer, activation_layer=activation_layer))
        self.add_module("pointwise", ConvNormAct(in_channels, out_channels, 1,
                                                 norm_layer=norm_layer, activation_layer=activation_layer))
        self.out_channels = out_channels


def _full_conv(in_channels: int, out_channels: int, stride: int = 1,
               norm_layer: LayerFactory = nn.BatchNorm2d,
               activation_layer: LayerFactory = nn.ReLU) -> nn.Module:
    """The paper's comparison layer (Table 4, "Conv MobileNet"): one full 3×3 conv → BN → ReLU
    in place of a depthwise separable pair."""
    return ConvNormAct(in_channels, out_channels, 3, stride,
                       norm_layer=norm_layer, activation_layer=activation_layer)


# Paper Table 1 after the first 3×3 conv (32 filters, stride 2): one row per depthwise
# separable layer pair, (pointwise output channels, stride of the depthwise conv).
# The paper's table prints "s2" for the last depthwise conv too, which cannot be right:
# its input and output are both 7×7. Every implementation (and the 569M count) uses s1.
MOBILENET_V1_SETTING: Tuple[Tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(ChecksInput, nn.Module):
    """MobileNet V1 (arXiv:1704.04861): a 3×3 conv with stride 2 and 32 filters, 13
    depthwise separable layer pairs (``MOBILENET_V1_SETTING``), global average pooling and
    a fully connected classifier: 28 layers (27 convs + FC); 4.2M parameters and 569M MACs at 224².

    * ``width_mult`` α (paper §3.3) thins *every* layer: C → α·C channels (rounded to a
      multiple of 8, which leaves the paper's α ∈ {1, 0.75, 0.5, 0.25} exact), so cost and
      parameters fall roughly as α².
    * The resolution multiplier ρ is not an argument: it is simply the input size. Feed
      ρ·224 pixels (the paper uses 224, 192, 160, 128); global pooling makes every size
      work, and cost falls as ρ².
    * ``separable=False`` builds the paper's comparison model with a full 3×3 conv in place
      of each depthwise separable pair (Table 4: 29.3M parameters, 4866M MACs, +1.1 % top-1).

    BN and ReLU follow every convolution (paper Fig. 3). There is no dropout (the paper uses
    little regularisation for small models). Shapes: ``(N, 3, H, W) -> (N, num_classes)``,
    any H, W ≥ 1 (every conv is padded).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        separable: bool = True,
        setting: Sequence[Tuple[int, int]] = MOBILENET_V1_SETTING,
        stem_channels: int = 32,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        activation_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        check_width_mult(width_mult)
        self.in_channels = in_channels
        block = DepthwiseSeparableConv if separable else _full_conv

        channels = make_divisible(stem_channels * width_mult, 8)
        layers: list = [ConvNormAct(in_channels, channels, 3, stride=2,
                                    norm_layer=norm_layer, activation_layer=activation_layer)]
        for out_channels, stride in setting:
            out_channels = make_divisible(out_channels * width_mult, 8)
            layers.append(block(channels, out_channels, stride,
                                norm_layer=norm_layer, activation_layer=activation_layer))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.features(x)                  # (N, 1024α, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 1024α)
        return self.classifier(x)             # (N, num_classes)


# --------------------------------------------------------------------------- MobileNet V2

# V2's non-linearity, in place as in torchvision.
RELU6: LayerFactory = partial(nn.ReLU6, inplace=True)

class InvertedResidual(nn.Module):
    """MobileNet V2's bottleneck (paper Table 1): 1×1 expand (×t) → ReLU6 → 3×3 depthwise
    (stride s) → ReLU6 → 1×1 *linear* projection, all with BN; ``x + block(x)`` when the
    stride is 1 and the channels match.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, ⌈H/s⌉, ⌈W/s⌉)``. The Sequential is called
    ``conv`` and holds ``[expand,] depthwise, project-conv, project-BN`` as torchvision has
    it; the expansion is skipped when t = 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 norm_layer: LayerFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer,
                                      activation_layer=RELU6))
        layers.append(ConvNormAct(hidden, hidden, 3, stride, groups=hidden, norm_layer=norm_layer,
                                  activation_layer=RELU6))
        # linear bottleneck: conv and BN flat in this Sequential (torchvision's indices)
        layers.extend(ConvNormAct(hidden, out_channels, 1, norm_layer=norm_layer, activation_layer=None))
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


# Paper Table 2: after a 3×3 conv with 32 filters and stride 2, rows of
# (t expansion, c output channels, n repeats, s stride of the first repeat); then a 1×1 conv
# to 1280 channels, global average pooling and the classifier.
MOBILENET_V2_SETTING: Tuple[Tuple[int, int, int, int], ...] = (
    # t,   c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(ChecksInput, nn.Module):
    """MobileNet V2 (arXiv:1801.04381), laid out as torchvision's ``MobileNetV2``.

    ``features``: stem ConvNormAct (3×3, stride 2, ReLU6), 17 ``InvertedResidual`` blocks from
    ``MOBILENET_V2_SETTING``, a 1×1 ConvNormAct to ``last_channel``; then global average
    pooling and ``classifier = [Dropout(0.2), Linear]``.

    Where torchvision (followed here) and the paper differ or the paper is silent: channels
    after the width multiplier are rounded to multiples of 8 (``make_divisible``, from the
    TensorFlow reference code); the last conv keeps 1280 channels for α < 1 (as the paper
    says) and grows for α > 1; the dropout rate 0.2 is torchvision's. torchvision counts
    3,504,872 parameters and 0.301 GMACs; the paper quotes 3.4M and 300M.
    Shapes: ``(N, 3, H, W) -> (N, num_classes)``, any H, W ≥ 1.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        setting: Sequence[Tuple[int, int, int, int]] = MOBILENET_V2_SETTING,
        round_nearest: int = 8,
        stem_channels: int = 32,
        last_channel: int = 1280,
        dropout: float = 0.2,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        check_width_mult(width_mult)
        self.in_channels = in_channels
        channels = make_divisible(stem_channels * width_mult, round_nearest)
        self.last_channel = make_divisible(last_channel * max(1.0, width_mult), round_nearest)

        layers: list = [ConvNormAct(in_channels, channels, 3, stride=2, norm_layer=norm_layer,
                                    activation_layer=RELU6)]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t, norm_layer))
                channels = out_channels
        layers.append(ConvNormAct(channels, self.last_channel, 1, norm_layer=norm_layer,
                                  activation_layer=RELU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        _init_weights(self)
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.features(x)                                     # (N, 1280, H/32, W/32)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (N, 1280)
        return self.classifier(x)                                # (N, num_classes)


# --------------------------------------------------------------------------- MobileNet V3

def _se_v3(channels: int) -> nn.Module:
    """MobileNet V3's squeeze-and-excitation (V3 paper §5.3): :class:`nets.se.SqueezeExcitation`
    with a quarter of the expanded channels (rounded to a multiple of 8) in the squeeze and the
    cheap hard sigmoid ``ReLU6(x + 3) / 6`` as the gate. Its ``fc1``/``fc2`` line up with
    torchvision's parameter names."""
    return SqueezeExcitation(channels, reduction=4, gate_layer=nn.Hardsigmoid)


# Activations as the V3 paper's tables name them ("NL" column); in place, as torchvision's
# (the value before the activation is not needed again, so its memory can be reused).
RE: LayerFactory = partial(nn.ReLU, inplace=True)
HS: LayerFactory = partial(nn.Hardswish, inplace=True)


class InvertedResidualV3(nn.Module):
    """MobileNet V3's "bneck": V2's inverted residual with a k×k depthwise kernel (3 or 5),
    a per-block non-linearity (ReLU or h-swish) and optional squeeze-and-excitation after
    the depthwise conv: ``[expand 1×1,] depthwise k×k, [SE,] project 1×1 (linear)``, each
    conv a ConvNormAct, in a Sequential called ``block`` (torchvision's name). The expansion
    is skipped when the expanded width equals the input width.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, ⌈H/s⌉, ⌈W/s⌉)``.
    """

    def __init__(self, in_channels: int, kernel_size: int, expanded_channels: int, out_channels: int,
                 use_se: bool, activation_layer: LayerFactory, stride: int,
                 norm_layer: LayerFactory,
                 se_layer: LayerFactory = _se_v3) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list = []
        if expanded_channels != in_channels:
            layers.append(ConvNormAct(in_channels, expanded_channels, 1, norm_layer=norm_layer,
                                      activation_layer=activation_layer))
        layers.append(ConvNormAct(expanded_channels, expanded_channels, kernel_size, stride,
                                  groups=expanded_channels, norm_layer=norm_layer,
                                  activation_layer=activation_layer))
        if use_se:
            layers.append(se_layer(expanded_channels))
        layers.append(ConvNormAct(expanded_channels, out_channels, 1, norm_layer=norm_layer,
                                  activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


# Paper Tables 1 and 2, after a 3×3 conv with 16 filters, stride 2 and h-swish. One row per
# bneck: (kernel, exp size, #out, SE, NL, s); the input width is the previous row's #out.
MOBILENET_V3_LARGE_SETTING: Tuple[tuple, ...] = (
    # k, exp, out,   SE,  NL, s
    (3, 16, 16, False, RE, 1),
    (3, 64, 24, False, RE, 2),
    (3, 72, 24, False, RE, 1),
    (5, 72, 40, True, RE, 2),
    (5, 120, 40, True, RE, 1),
    (5, 120, 40, True, RE, 1),
    (3, 240, 80, False, HS, 2),
    (3, 200, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 480, 112, True, HS, 1),
    (3, 672, 112, True, HS, 1),
    (5, 672, 160, True, HS, 2),
    (5, 960, 160, True, HS, 1),
    (5, 960, 160, True, HS, 1),
)

MOBILENET_V3_SMALL_SETTING: Tuple[tuple, ...] = (
    # k, exp, out,   SE,  NL, s
    (3, 16, 16, True, RE, 2),
    (3, 72, 24, False, RE, 2),
    (3, 88, 24, False, RE, 1),
    (5, 96, 40, True, HS, 2),
    (5, 240, 40, True, HS, 1),
    (5, 240, 40, True, HS, 1),
    (5, 120, 48, True, HS, 1),
    (5, 144, 48, True, HS, 1),
    (5, 288, 96, True, HS, 2),
    (5, 576, 96, True, HS, 1),
    (5, 576, 96, True, HS, 1),
)


class MobileNetV3(ChecksInput, nn.Module):
    """MobileNet V3 (arXiv:1905.02244), laid out as torchvision's ``MobileNetV3``.

    ``features``: stem ConvNormAct (3×3, stride 2, h-swish), one ``InvertedResidualV3`` per
    row of ``setting``, a 1×1 ConvNormAct to 6× the last width (h-swish); then ``avgpool``
    and ``classifier = [Linear(→ last_channel), Hardswish, Dropout(0.2), Linear]``.

    Where torchvision (followed here) differs from the paper or fills in what it leaves
    open: BatchNorm uses ``eps=0.001, momentum=0.01`` (TensorFlow's defaults; PyTorch's are
    1e-5 and 0.1); channels after the width multiplier are rounded with ``make_divisible``
    (the SE squeeze width too: ``make_divisible(exp // 4, 8)``), and ``last_channel`` is
    scaled by α as well; the head's 1×1 convs without BN (paper Fig. 5) are written as
    ``Linear`` layers — the same map on a pooled vector; dropout is 0.2. Counted at 224²:
    Large 5,483,032 parameters and 0.217 GMACs (paper 5.4M, 219M), Small 2,542,856 and 0.057
    (paper 2.5M, 56M). Shapes: ``(N, 3, H, W) -> (N, num_classes)``, any H, W ≥ 1.
    """

    def __init__(
        self,
        setting: Sequence[tuple],
        last_channel: int,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        stem_channels: int = 16,
        dropout: float = 0.2,
        in_channels: int = 3,
        norm_layer: Optional[LayerFactory] = None,
    ) -> None:
        super().__init__()
        check_width_mult(width_mult)
        if norm_layer is None:
            norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        self.in_channels = in_channels

        def scaled(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        channels = scaled(stem_channels)
        layers: list = [ConvNormAct(in_channels, channels, 3, stride=2, norm_layer=norm_layer,
                                    activation_layer=HS)]
        for kernel, expanded, out, use_se, activation, stride in setting:
            layers.append(InvertedResidualV3(channels, kernel, scaled(expanded), scaled(out), use_se,
                                             activation, stride, norm_layer))
            channels = scaled(out)
        head_channels = 6 * channels
        layers.append(ConvNormAct(channels, head_channels, 1, norm_layer=norm_layer,
                                  activation_layer=HS))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.last_channel = scaled(last_channel)
        self.classifier = nn.Sequential(
            nn.Linear(head_channels, self.last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(self.last_channel, num_classes),
        )
        _init_weights(self)
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.features(x)                   # (N, 6·C_last, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 6·C_last)
        return self.classifier(x)              # (N, num_classes)


# --------------------------------------------------------------------------- builders

def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, separable: bool = True,
                 **kwargs: Any) -> MobileNetV1:
    """MobileNet V1 α-224 (arXiv:1704.04861): 4,231,976 parameters and 0.569 GMACs at α = 1
    and 224² (paper: 4.2M, 569M, 70.6 % top-1). ``separable=False``: the full-convolution
    comparison model, 29,294,088 parameters and 4.867 GMACs (paper: 29.3M, 4866M, 71.7 %).
    No pretrained weights (torchvision has none)."""
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, separable=separable, **kwargs)


def _torchvision_mobilenet(name: str, model: Callable[..., nn.Module], weights: Optional[Weights],
                           progress: bool, num_classes: int, width_mult: float,
                           kwargs: dict) -> nn.Module:
    check_num_classes(weights, name, num_classes)
    _check_pretrained_width(weights, width_mult)
    net = model(num_classes=num_classes, width_mult=width_mult, **kwargs)
    if weights is not None:
        load_torchvision_weights(net, weights, name, progress)
    return net


def mobilenet_v2(*, weights: Optional[Weights] = None, progress: bool = True, num_classes: int = 1000,
                 width_mult: float = 1.0, **kwargs: Any) -> MobileNetV2:
    """MobileNet V2 (arXiv:1801.04381), torchvision-compatible. ``weights``: a
    ``MobileNet_V2_Weights`` member or name ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT") to
    load torchvision's ImageNet checkpoint (71.88 % top-1 for V1)."""
    return _torchvision_mobilenet("mobilenet_v2", MobileNetV2, weights, progress, num_classes,
                                  width_mult, kwargs)


def mobilenet_v3_large(*, weights: Optional[Weights] = None, progress: bool = True,
                       num_classes: int = 1000, width_mult: float = 1.0, **kwargs: Any) -> MobileNetV3:
    """MobileNet V3-Large (arXiv:1905.02244), torchvision-compatible; ``weights``: a
    ``MobileNet_V3_Large_Weights`` member or name (74.04 % top-1 for IMAGENET1K_V1)."""
    return _torchvision_mobilenet("mobilenet_v3_large",
                                  partial(MobileNetV3, MOBILENET_V3_LARGE_SETTING, 1280),
                                  weights, progress, num_classes, width_mult, kwargs)


def mobilenet_v3_small(*, weights: Optional[Weights] = None, progress: bool = True,
                       num_classes: int = 1000, width_mult: float = 1.0, **kwargs: Any) -> MobileNetV3:
    """MobileNet V3-Small (arXiv:1905.02244), torchvision-compatible; ``weights``: a
    ``MobileNet_V3_Small_Weights`` member or name (67.67 % top-1 for IMAGENET1K_V1)."""
    return _torchvision_mobilenet("mobilenet_v3_small",
                                  partial(MobileNetV3, MOBILENET_V3_SMALL_SETTING, 1024),
                                  weights, progress, num_classes, width_mult, kwargs)
