"""ShuffleNets V1 and V2: cheap 1×1 convolutions made to talk to each other.

* V1 — Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural
  Network for Mobile Devices", arXiv:1707.01083. In a MobileNet the 1×1 convs cost almost
  everything; ShuffleNet splits them into ``g`` groups (``g`` times cheaper) and, so that
  information still crosses the groups, *shuffles* the channels between two grouped convs.
* V2 — Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design", arXiv:1807.11164. FLOPs are not speed; four guidelines (equal
  widths, few groups, little fragmentation, few element-wise ops) lead to a unit that
  *splits* the channels in two, transforms one half with ungrouped convs, concatenates
  and shuffles.

ShuffleNet V2 uses torchvision's attribute names (``conv1``, ``maxpool``, ``stage2..4``,
``conv5``, ``fc``; units with ``branch1``/``branch2``) so torchvision's checkpoints load
strictly; ShuffleNet V1 follows the authors' released code (megvii-model/ShuffleNet-Series,
``ShuffleNetV1/network.py`` and ``blocks.py``), names included.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import ChecksInput, ConvNormAct, LayerFactory, check_image_batch, check_width_mult, make_divisible
from .weights import Weights, check_num_classes, load_torchvision_weights, make_builder

__all__ = [
    "channel_shuffle",
    "ShuffleV2Block",
    "ShuffleNetV2",
    "ShuffleV1Block",
    "ShuffleNetV1",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "shufflenet_v1",
]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet V1 §3.1, Fig. 1).

    With C = g·n channels: reshape the channel axis to ``(g, n)``, transpose to ``(n, g)``,
    flatten. Output channel ``i·g + j`` is input channel ``j·n + i``, so each of the next
    layer's groups receives channels from every group of this one. Example, C = 6, g = 2:
    ``[0, 1, 2 | 3, 4, 5] -> [0, 3, 1, 4, 2, 5]``. The inverse permutation is
    ``channel_shuffle(y, C // g)``.

    Shapes: ``(N, C, *) -> (N, C, *)`` (usually ``(N, C, H, W)``); C must be divisible by g.
    """
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if x.dim() < 2:
        raise ValueError(f"channel_shuffle expects a tensor shaped (N, C, ...), got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels cannot be split into {groups} equal groups")
    rest = x.shape[2:]
    x = x.reshape(n, groups, c // groups, *rest)   # (N, g, C/g, H, W)
    x = x.transpose(1, 2)                          # (N, C/g, g, H, W)
    return x.reshape(n, c, *rest)                  # (N, C, H, W), groups interleaved


# --------------------------------------------------------------------------- ShuffleNet V2

# In place, as torchvision's (the value before the ReLU is not needed again).
_RELU: LayerFactory = partial(nn.ReLU, inplace=True)

class ShuffleV2Block(nn.Module):
    """The ShuffleNet V2 unit (paper Fig. 3c, d).

    Stride 1: split the channels in half; the left half passes unchanged (an identity, cheap
    by G4), the right half goes through ``branch2`` = 1×1 conv → BN → ReLU → 3×3 depthwise →
    BN → 1×1 conv → BN → ReLU with equal widths (G1) and no groups (G2); concatenate, then
    ``channel_shuffle(·, 2)`` so the halves mix in the next unit.
    Stride 2: no split; ``branch1`` (3×3 depthwise, stride 2 → BN → 1×1 → BN → ReLU) and
    ``branch2`` both see the whole input, and their concatenation doubles the width.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, ⌈H/s⌉, ⌈W/s⌉)``; stride 1 needs C_in = C_out.
    The paper's unit and torchvision's agree; each branch is a flat Sequential (torchvision's
    indices), assembled from ConvNormAct parts.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_layer: LayerFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        branch = out_channels // 2
        if stride == 1 and in_channels != 2 * branch:
            raise ValueError(f"a stride-1 unit keeps its width: in_channels ({in_channels}) must equal "
                             f"out_channels ({out_channels}) and be even")
        self.stride = stride
        self.branch1: Optional[nn.Sequential] = None
        if stride == 2:
            self.branch1 = nn.Sequential(
                *ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels,
                             norm_layer=norm_layer, activation_layer=None),
                *ConvNormAct(in_channels, branch, 1, norm_layer=norm_layer, activation_layer=_RELU),
            )
        self.branch2 = nn.Sequential(
            *ConvNormAct(in_channels if stride == 2 else branch, branch, 1, norm_layer=norm_layer,
                         activation_layer=_RELU),
            *ConvNormAct(branch, branch, 3, stride, groups=branch, norm_layer=norm_layer,
                         activation_layer=None),
            *ConvNormAct(branch, branch, 1, norm_layer=norm_layer, activation_layer=_RELU),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)                              # (N, C/2, H, W) each
            out = torch.cat((x1, self.branch2(x2)), dim=1)          # (N, C, H, W)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)  # (N, C_out, H/2, W/2)
        return channel_shuffle(out, 2)


# Paper Table 5: repeats of stages 2-4 and the widths of conv1, stages 2-4 and conv5.
SHUFFLENET_V2_REPEATS: Tuple[int, int, int] = (4, 8, 4)
SHUFFLENET_V2_CHANNELS: Dict[str, Tuple[int, int, int, int, int]] = {
    "0.5x": (24, 48, 96, 192, 1024),
    "1.0x": (24, 116, 232, 464, 1024),
    "1.5x": (24, 176, 352, 704, 1024),
    "2.0x": (24, 244, 488, 976, 2048),
}


class ShuffleNetV2(ChecksInput, nn.Module):
    """ShuffleNet V2 (arXiv:1807.11164), laid out as torchvision's ``ShuffleNetV2``:
    ``conv1`` (3×3, stride 2) → ``maxpool`` → ``stage2..4`` (each opens with a stride-2 unit)
    → ``conv5`` (1×1) → global average pool → ``fc``.

    Counted at 224²: 1,366,792 / 2,278,604 / 3,503,624 / 7,393,996 parameters and 0.040 /
    0.145 / 0.296 / 0.583 GMACs for 0.5× / 1.0× / 1.5× / 2.0× (paper: 1.4/2.3/3.5/7.4M,
    41/146/299/591M). Shapes: ``(N, 3, H, W) -> (N, num_classes)``, any H, W ≥ 1.
    """

    def __init__(
        self,
        stages_repeats: Sequence[int],
        stages_out_channels: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3 or len(stages_out_channels) != 5:
            raise ValueError("ShuffleNetV2 needs 3 stage repeats and 5 widths (conv1, stage2..4, conv5), "
                             f"got {list(stages_repeats)} and {list(stages_out_channels)}")
        self.in_channels = in_channels
        channels = stages_out_channels[0]
        self.conv1 = ConvNormAct(in_channels, channels, 3, stride=2, norm_layer=norm_layer,
                                 activation_layer=_RELU)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, out_channels in zip(("stage2", "stage3", "stage4"), stages_repeats,
                                               stages_out_channels[1:4]):
            units = [ShuffleV2Block(channels, out_channels, 2, norm_layer)]
            units += [ShuffleV2Block(out_channels, out_channels, 1, norm_layer) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            channels = out_channels
        self.conv5 = ConvNormAct(channels, stages_out_channels[4], 1, norm_layer=norm_layer,
                                 activation_layer=_RELU)
        self.fc = nn.Linear(stages_out_channels[4], num_classes)
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.maxpool(self.conv1(x))   # (N, 24, H/4, W/4)
        x = self.stage2(x)                # (N, c2, H/8, W/8)
        x = self.stage3(x)                # (N, c3, H/16, W/16)
        x = self.stage4(x)                # (N, c4, H/32, W/32)
        x = self.conv5(x)                 # (N, c5, H/32, W/32)
        x = x.mean((2, 3))                # global average pool: (N, c5)
        return self.fc(x)                 # (N, num_classes)


def _shufflenet_v2(arch: str, *, size: str, weights: Optional[Weights], progress: bool,
                   num_classes: int, **kwargs: Any) -> ShuffleNetV2:
    check_num_classes(weights, arch, num_classes)
    model = ShuffleNetV2(SHUFFLENET_V2_REPEATS, SHUFFLENET_V2_CHANNELS[size], num_classes=num_classes,
                         **kwargs)
    if weights is not None:
        load_torchvision_weights(model, weights, arch, progress)
    return model


def _v2_doc(size: str, top1: str) -> str:
    return (f"ShuffleNet V2 {size}× (arXiv:1807.11164), torchvision-compatible; ``weights``: a member "
            f"or name of torchvision's ``ShuffleNet_V2_X{size.replace('.', '_')}_Weights`` "
            f"({top1} % top-1).")


shufflenet_v2_x0_5 = make_builder("shufflenet_v2_x0_5", _shufflenet_v2, _v2_doc("0.5", "60.55"),
                                  arch="shufflenet_v2_x0_5", size="0.5x")
shufflenet_v2_x1_0 = make_builder("shufflenet_v2_x1_0", _shufflenet_v2, _v2_doc("1.0", "69.36"),
                                  arch="shufflenet_v2_x1_0", size="1.0x")
shufflenet_v2_x1_5 = make_builder("shufflenet_v2_x1_5", _shufflenet_v2, _v2_doc("1.5", "73.00"),
                                  arch="shufflenet_v2_x1_5", size="1.5x")
shufflenet_v2_x2_0 = make_builder("shufflenet_v2_x2_0", _shufflenet_v2, _v2_doc("2.0", "76.23"),
                                  arch="shufflenet_v2_x2_0", size="2.0x")


# --------------------------------------------------------------------------- ShuffleNet V1

class ShuffleV1Block(nn.Module):
    """The ShuffleNet unit (paper Fig. 2b, c), as in the authors' ``ShuffleV1Block``.

    ``branch_main_1``: 1×1 group conv (g groups) → BN → ReLU → 3×3 depthwise (stride s) → BN
    (no ReLU after the depthwise conv, as in Xception); ``channel_shuffle(·, g)``;
    ``branch_main_2``: 1×1 group conv → BN. The bottleneck width is ``out_channels / 4``.

    * stride 1: ``ReLU(x + main(x))``.
    * stride 2: ``ReLU(concat(avgpool3×3,s2(x), main(x)))`` — the main branch produces only
      ``out_channels − in_channels`` channels, and the concatenation widens the tensor at
      almost no cost. (The authors apply the ReLU to the main branch only; the pooled
      shortcut of a ReLU output is already ≥ 0, so the two agree.)

    ``group_first_conv=False`` leaves the first 1×1 conv ungrouped: the paper does this in
    the very first unit of stage 2, whose input (24 channels) is too thin to split.

    Shuffle order: this block uses the paper's shuffle (``channel_shuffle(x, g)``); the
    authors' code reshapes the channels as ``(C/g, g)`` instead of ``(g, C/g)``, i.e. it
    applies the inverse permutation ``channel_shuffle(x, C // g)``. Both feed every group
    of the second 1×1 conv from every group of the first, and the parameters are the same
    — but a checkpoint trained with one order gives different outputs with the other.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, ⌈H/s⌉, ⌈W/s⌉)``.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int,
                 group_first_conv: bool = True, norm_layer: LayerFactory = nn.BatchNorm2d,
                 activation_layer: LayerFactory = nn.ReLU) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        main_out = out_channels - in_channels if stride == 2 else out_channels
        mid = out_channels // 4
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 unit adds its input: in_channels ({in_channels}) must equal "
                             f"out_channels ({out_channels})")
        if main_out <= 0 or main_out % groups or mid % groups or out_channels % 4:
            raise ValueError(
                f"ShuffleNet unit {in_channels}->{out_channels} (stride {stride}) with {groups} groups: the "
                f"bottleneck ({out_channels}/4) and the main-branch output ({main_out}) must be positive "
                f"multiples of {groups}")
        first_groups = groups if group_first_conv else 1
        if in_channels % first_groups:
            raise ValueError(f"{in_channels} input channels cannot be split into {groups} groups")
        self.groups = groups
        self.stride = stride
        self.branch_main_1 = nn.Sequential(
            *ConvNormAct(in_channels, mid, 1, groups=first_groups, norm_layer=norm_layer,
                         activation_layer=activation_layer),
            *ConvNormAct(mid, mid, 3, stride, groups=mid, norm_layer=norm_layer, activation_layer=None),
        )
        self.branch_main_2 = ConvNormAct(mid, main_out, 1, groups=groups, norm_layer=norm_layer,
                                         activation_layer=None)
        self.branch_proj = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else None
        self.act = activation_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)                  # (N, C_out/4, H/s, W/s)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.branch_main_2(out)                # (N, C_out [− C_in], H/s, W/s)
        if self.branch_proj is None:
            return self.act(x + out)                 # (N, C_out, H, W)
        return self.act(torch.cat((self.branch_proj(x), out), dim=1))  # (N, C_out, H/2, W/2)


# Paper Table 1: output widths of stages 2-4 at 1× for each group count (the widths grow
# with g so that every g costs about 140M MACs), the repeats per stage, and the first conv.
SHUFFLENET_V1_CHANNELS: Dict[int, Tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
SHUFFLENET_V1_REPEATS: Tuple[int, int, int] = (4, 8, 4)
SHUFFLENET_V1_STEM: int = 24


class ShuffleNetV1(ChecksInput, nn.Module):
    """ShuffleNet V1 (arXiv:1707.01083) as the authors released it: ``first_conv`` (3×3,
    stride 2, 24 filters, BN, ReLU) → ``maxpool`` 3×3/2 → ``features`` (stages 2-4 of
    4/8/4 ``ShuffleV1Block``s, each stage opening with a stride-2 unit; the first unit's first
    1×1 conv ungrouped) → global average pool → ``classifier`` (a Linear *without* bias,
    as in the authors' code; the paper does not say).

    ``width_mult`` s ("ShuffleNet s×") scales every width; stage widths are rounded to
    multiples of 4g (so the bottleneck, width/4, splits into g groups) and the first conv
    to a multiple of g. That reproduces the authors' 0.5×/1.0×/2.0× configurations for
    g = 3 and 8 exactly; for 1.5× they keep a 24-channel first conv (pass
    ``stem_channels=24``) where the rule gives 36.

    Counted at 224², 1.0×: g = 3 has 1,864,728 parameters and 0.1375 GMACs, g = 8 has
    2,433,768 and 0.1384 (paper Table 1: about 140 MFLOPs — counted as mult-adds — for
    every g).
    Shapes: ``(N, 3, H, W) -> (N, num_classes)``, any H, W ≥ 1.
    """

    def __init__(
        self,
        groups: int = 3,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        stem_channels: Optional[int] = None,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        activation_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        if isinstance(groups, bool) or groups not in SHUFFLENET_V1_CHANNELS:
            raise ValueError(f"ShuffleNet V1 is defined for groups in {sorted(SHUFFLENET_V1_CHANNELS)}, "
                             f"got {groups!r}")
        check_width_mult(width_mult)
        self.in_channels = in_channels
        self.groups = groups
        if stem_channels is None:
            stem_channels = make_divisible(SHUFFLENET_V1_STEM * width_mult, groups)
        stage_channels = [make_divisible(c * width_mult, 4 * groups)
                          for c in SHUFFLENET_V1_CHANNELS[groups]]

        self.first_conv = ConvNormAct(in_channels, stem_channels, 3, stride=2, norm_layer=norm_layer,
                                      activation_layer=activation_layer)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        units: list = []
        channels = stem_channels
        for stage, (repeats, out_channels) in enumerate(zip(SHUFFLENET_V1_REPEATS, stage_channels)):
            for i in range(repeats):
                units.append(ShuffleV1Block(channels, out_channels, groups, stride=2 if i == 0 else 1,
                                            group_first_conv=not (stage == 0 and i == 0),
                                            norm_layer=norm_layer, activation_layer=activation_layer))
                channels = out_channels
        self.features = nn.Sequential(*units)
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(channels, num_classes, bias=False))
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.maxpool(self.first_conv(x))       # (N, 24s, H/4, W/4)
        x = self.features(x)                       # (N, c4, H/32, W/32)
        x = torch.flatten(self.globalpool(x), 1)   # (N, c4)
        return self.classifier(x)                  # (N, num_classes)


def shufflenet_v1(*, groups: int = 3, width_mult: float = 1.0, num_classes: int = 1000,
                  **kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet V1 s× with g groups (arXiv:1707.01083; paper Table 1 and the authors'
    code); g ∈ {1, 2, 3, 4, 8}. No pretrained weights (torchvision has none)."""
    return ShuffleNetV1(groups=groups, width_mult=width_mult, num_classes=num_classes, **kwargs)
