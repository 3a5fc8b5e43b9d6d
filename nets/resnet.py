"""Residual networks: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition",
arXiv:1512.03385. ResNeXt: Xie et al., arXiv:1611.05431. Wide ResNet: Zagoruyko and
Komodakis, arXiv:1605.07146.

A stack of layers is asked to learn a residual ``F(x) = H(x) - x`` instead of the mapping
``H(x)`` itself; a shortcut adds the input back:

    y = relu(F(x) + shortcut(x))

``shortcut`` is the identity when shapes match and a 1×1 convolution + norm (the paper's
"projection", option B) where a stage halves the map and widens the channels. If the best
thing a block can do is nothing, it only has to drive ``F`` to zero, which is easier than
learning the identity through a stack of nonlinear layers; that is why 152 residual layers
train where a 34-layer plain net already trains worse than an 18-layer one.

Layout (ImageNet, 224×224 input):

    stem     7×7/2 conv, 64 → BN → ReLU → 3×3/2 max pool          (N, 64, 56, 56)
    layer1   blocks at 56×56                                      (N, 64·e, 56, 56)
    layer2   first block stride 2                                 (N, 128·e, 28, 28)
    layer3   first block stride 2                                 (N, 256·e, 14, 14)
    layer4   first block stride 2                                 (N, 512·e, 7, 7)
    head     global average pool → fc                             (N, num_classes)

with ``e = 1`` for :class:`BasicBlock` (ResNet-18/34) and ``e = 4`` for :class:`Bottleneck`
(ResNet-50/101/152, ResNeXt, Wide ResNet). Attribute names are torchvision's, so
``model.load_state_dict(torchvision_model.state_dict(), strict=True)`` works and the outputs
are identical.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Type, Union

import torch
from torch import nn

from .layers import ChecksInput, ConvNormAct, LayerFactory, check_image_batch
from .weights import Weights, check_num_classes, load_torchvision_weights, make_builder, no_pretrained_weights

__all__ = [
    "ResidualBlock",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "init_resnet_weights",
    "attention_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]

def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (the norm that follows has its own shift)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                     groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution without bias: mixes channels, optionally subsamples by ``stride``."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class ResidualBlock(nn.Module):
    """What every residual block shares: ``out = relu(attn(F(x)) + shortcut(x))``.

    Subclasses build the residual branch F in :meth:`build_branch` (its last norm is the
    one :meth:`zero_init_last` zeroes) and compute it in :meth:`branch`. ``downsample`` is
    the shortcut when shapes change (``None`` = identity): torchvision's 1×1 conv + norm, or
    any module mapping the input to the branch's output shape, e.g. the CIFAR nets'
    parameter-free zero-padding shortcut. ``shortcut=False`` drops the addition and gives the
    paper's *plain* twin of the block (then ``downsample`` must be ``None``).
    ``attn_layer(out_channels)`` builds an attention module (SE, CBAM, ...) applied after the
    last norm and before the addition; without one it is ``nn.Identity`` (no parameters, so
    the state_dict stays torchvision's).
    """

    expansion: int = 1
    last_norm: str = ""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: Optional[LayerFactory] = None,
        attn_layer: Optional[LayerFactory] = None,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        if not shortcut and downsample is not None:
            raise ValueError("a plain block (shortcut=False) has no shortcut to downsample")
        self.build_branch(inplanes, planes, stride, groups, base_width, norm_layer or nn.BatchNorm2d)
        self.relu = nn.ReLU(inplace=True)
        self.attn = attn_layer(planes * self.expansion) if attn_layer else nn.Identity()
        self.downsample = downsample
        self.stride = stride
        self.shortcut = shortcut

    def build_branch(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                     norm_layer: LayerFactory) -> None:
        raise NotImplementedError

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def zero_init_last(self) -> None:
        """Set the last norm's scale γ to 0: the residual branch then outputs 0 and the
        block starts as ``relu(shortcut(x))`` (Goyal et al., arXiv:1706.02677)."""
        weight = getattr(getattr(self, self.last_norm), "weight", None)
        if weight is not None:
            nn.init.zeros_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attn(self.branch(x))                  # (N, e·planes, H/s, W/s)
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3×3 convolutions and a shortcut (the paper's Fig. 2, left; ResNet-18/34, CIFAR nets).

        out = relu( attn(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x) )

    ``conv1`` carries the ``stride``; ``downsample``, ``attn_layer`` and ``shortcut`` as in
    :class:`ResidualBlock`. Shapes: ``(N, inplanes, H, W) -> (N, planes, ceil(H/stride),
    ceil(W/stride))``.
    """

    expansion: int = 1
    last_norm: str = "bn2"

    def build_branch(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                     norm_layer: LayerFactory) -> None:
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock has no grouped or widened variant (got groups={groups}, "
                             f"base_width={base_width}); use Bottleneck for ResNeXt / Wide ResNet")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))        # (N, planes, H/s, W/s)
        return self.bn2(self.conv2(out))                # (N, planes, H/s, W/s)


class Bottleneck(ResidualBlock):
    """1×1 reduce → 3×3 → 1×1 expand, and a shortcut (the paper's Fig. 5, right; ResNet-50+).

        out = relu( attn(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))) + shortcut(x) )

    Inner width ``width = int(planes · base_width / 64) · groups``; output ``planes · 4``.
    ResNet: ``groups=1, base_width=64`` (width = planes). ResNeXt-50 32×4d: 32 groups of 4
    channels per group at the first stage (width 128 = 2·planes), the grouped 3×3 conv being
    the "cardinality" of the paper. Wide ResNet-50-2: ``base_width=128`` (width = 2·planes).

    Where torchvision differs from the paper: the ``stride`` sits on the 3×3 ``conv2``
    ("ResNet V1.5"), while the paper puts it on the first 1×1 ``conv1``. A strided 1×1 conv
    simply drops three quarters of its input positions; striding the 3×3 conv sees all of
    them. V1.5 costs more (4.09 instead of 3.86 GMACs for ResNet-50, same parameters) and
    NVIDIA report it about 0.5 % more accurate; we follow torchvision so its weights load.

    ``downsample``, ``attn_layer`` and ``shortcut`` as in :class:`ResidualBlock`.
    Shapes: ``(N, inplanes, H, W) -> (N, 4·planes, ceil(H/stride), ceil(W/stride))``.
    """

    expansion: int = 4
    last_norm: str = "bn3"

    def build_branch(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                     norm_layer: LayerFactory) -> None:
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups)     # V1.5: the stride is here
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))        # (N, width, H, W)
        out = self.relu(self.bn2(self.conv2(out)))      # (N, width, H/s, W/s)
        return self.bn3(self.conv3(out))                # (N, 4·planes, H/s, W/s)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


def init_resnet_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """The ResNet initialisation: He-normal convolutions (fan-out, gain √2 for ReLU;
    He et al., arXiv:1502.01852), norms at γ = 1, β = 0, linear layers left at PyTorch's
    default. With ``zero_init_residual`` every residual block's last γ is 0, so each block
    starts as (ReLU of) its shortcut — the net starts shallow and learns depth as it trains.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, ResidualBlock) and m.shortcut:
                m.zero_init_last()


_STEMS = ("standard", "deep")


class ResNet(ChecksInput, nn.Module):
    """ImageNet ResNet / ResNeXt / Wide ResNet (see the module docstring for the layout).

    ``block`` and ``layers`` (blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50) fix the
    depth; ``groups`` and ``width_per_group`` the Bottleneck's inner width. ``norm_layer``
    (default ``nn.BatchNorm2d``) and ``attn_layer`` are callables taking a channel count;
    ``attn_layer`` goes into every block (SE-ResNet, CBAM-ResNet).

    ``stem="deep"`` replaces the 7×7 conv by three 3×3 convs (the "ResNet-C" stem of Bag of
    Tricks, He et al. arXiv:1812.01187; PSPNet's ``deep_base``):
    ``conv1 = [3×3/2 → norm → ReLU → 3×3 → norm → ReLU → 3×3 to 2·stem_width]``, followed as
    usual by ``bn1``, ReLU and max pool. Three small convolutions instead of one large: more
    nonlinearity and a receptive field of 11 instead of 7 pixels. At the default
    ``stem_width=32`` only ``conv1`` differs, so torchvision's weights fit everything else
    (``load_state_dict(..., strict=False)``).

    Any input of at least 1×1 pixels works: the pooling before ``fc`` is adaptive, not a
    fixed ``AvgPool2d(7)`` that only fits 224×224.

    Shapes: ``(N, in_channels, H, W) -> (N, num_classes)``;
    :meth:`forward_features`: ``-> (N, 512·e, ceil(H/32), ceil(W/32))``.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        norm_layer: Optional[LayerFactory] = None,
        stem: str = "standard",
        stem_width: int = 32,
        attn_layer: Optional[LayerFactory] = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must give 4 stage depths ≥ 1, e.g. [2, 2, 2, 2]; got {list(layers)}")
        if stem not in _STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {_STEMS}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.in_channels = in_channels
        self.groups = groups
        self.base_width = width_per_group
        self._norm_layer = norm_layer
        self._attn_layer = attn_layer

        if stem == "standard":
            self.inplanes = 64
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.inplanes = 2 * stem_width
            # Flat Sequential (indices 0..6, ReLUs at 2 and 5), timm's layout.
            self.conv1 = nn.Sequential(
                *ConvNormAct(in_channels, stem_width, 3, stride=2, norm_layer=norm_layer),
                *ConvNormAct(stem_width, stem_width, 3, norm_layer=norm_layer),
                conv3x3(stem_width, 2 * stem_width),
            )
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.num_features = 512 * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.num_features, num_classes)

        init_resnet_weights(self, zero_init_residual)
        self.skip_nested_checks()

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        """One stage: the first block changes the shape (stride, width), the rest keep it."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            # option B projection: Sequential(1×1 conv, norm) = keys downsample.0, downsample.1
            downsample = ConvNormAct(self.inplanes, out_channels, 1, stride,
                                     norm_layer=self._norm_layer, activation_layer=None)
        common = dict(groups=self.groups, base_width=self.base_width,
                      norm_layer=self._norm_layer, attn_layer=self._attn_layer)
        stage = [block(self.inplanes, planes, stride, downsample, **common)]
        self.inplanes = out_channels
        stage += [block(self.inplanes, planes, **common) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone: stem and the four stages, before pooling.
        ``(N, in_channels, H, W) -> (N, 512·e, ceil(H/32), ceil(W/32))``."""
        if self.check_input:
            check_image_batch(x, self.in_channels, owner=type(self).__name__)
        x = self.relu(self.bn1(self.conv1(x)))    # (N, 64, H/2, W/2)
        x = self.maxpool(x)                       # (N, 64, H/4, W/4)
        x = self.layer1(x)                        # (N, 64·e, H/4, W/4)
        x = self.layer2(x)                        # (N, 128·e, H/8, W/8)
        x = self.layer3(x)                        # (N, 256·e, H/16, W/16)
        return self.layer4(x)                     # (N, 512·e, H/32, W/32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = torch.flatten(self.avgpool(x), 1)     # (N, 512·e)
        return self.fc(x)                         # (N, num_classes)


# Architectures as data: (block, blocks per stage, groups, width per group).
_ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 1, 64),
    "resnet34": (BasicBlock, [3, 4, 6, 3], 1, 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 1, 64),
    "resnet101": (Bottleneck, [3, 4, 23, 3], 1, 64),
    "resnet152": (Bottleneck, [3, 8, 36, 3], 1, 64),
    "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], 32, 4),
    "resnext101_32x8d": (Bottleneck, [3, 4, 23, 3], 32, 8),
    "resnext101_64x4d": (Bottleneck, [3, 4, 23, 3], 64, 4),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], 1, 128),
    "wide_resnet101_2": (Bottleneck, [3, 4, 23, 3], 1, 128),
}

def _build(arch: str, *, weights: Optional[Weights], progress: bool, num_classes: int,
           **kwargs: Any) -> ResNet:
    """Build ``arch`` from ``_ARCHS``; load torchvision's checkpoint named by ``weights``
    (resolved through torchvision's own ``get_model_weights(arch)``)."""
    check_num_classes(weights, arch, num_classes)
    block, layers, groups, width = _ARCHS[arch]
    model = ResNet(block, layers, num_classes=num_classes, groups=groups,
                   width_per_group=width, **kwargs)
    if weights is not None:
        load_torchvision_weights(model, weights, arch, progress)
    return model


def attention_resnet(arch: str, attention: LayerFactory, what: str, *,
                     weights: Optional[Weights] = None, progress: bool = True,
                     num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """The ResNet ``arch`` (a key of ``_ARCHS``, e.g. ``"resnet50"``) with ``attention``
    (an ``attn_layer`` factory) in every block's attention slot: how SE-ResNet and CBAM-ResNet are built. ``what``
    names the family in error messages. torchvision has no checkpoints for them, so
    ``weights`` must be None; an ImageNet ResNet's state_dict loads with ``strict=False``
    (only the attention parameters stay missing)."""
    no_pretrained_weights(weights, what, hint=(
        "; to start from an ImageNet ResNet, load its state_dict with strict=False "
        "(only the attention parameters stay missing)"))
    if "attn_layer" in kwargs:
        raise ValueError(f"{what} builders set attn_layer themselves; use nets.resnet.ResNet "
                         "for another attention module")
    return _build(arch, weights=None, progress=progress, num_classes=num_classes,
                  attn_layer=attention, **kwargs)


def _weights_doc(enum: str, top1: str = "") -> str:
    return (f"``weights``: a member or name of torchvision's ``{enum}`` (e.g. ``\"IMAGENET1K_V1\"``, "
            f"``\"DEFAULT\"``){top1}; other keywords go to :class:`ResNet`.")


resnet18 = make_builder("resnet18", _build, f"""ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512
    parameters, 1.81 GMACs at 224×224. {_weights_doc("ResNet18_Weights", ", 69.76 % top-1")}""",
                        arch="resnet18")
resnet34 = make_builder("resnet34", _build, f"""ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672
    parameters, 3.66 GMACs. {_weights_doc("ResNet34_Weights", ", 73.31 % top-1")}""", arch="resnet34")
resnet50 = make_builder("resnet50", _build, f"""ResNet-50 (V1.5): bottlenecks [3, 4, 6, 3]; 25,557,032
    parameters, 4.09 GMACs. {_weights_doc("ResNet50_Weights", ": V1 76.13 %, V2 = DEFAULT 80.86 % top-1")}""",
                        arch="resnet50")
resnet101 = make_builder("resnet101", _build, f"""ResNet-101 (V1.5): bottlenecks [3, 4, 23, 3];
    44,549,160 parameters, 7.80 GMACs. {_weights_doc("ResNet101_Weights")}""", arch="resnet101")
resnet152 = make_builder("resnet152", _build, f"""ResNet-152 (V1.5): bottlenecks [3, 8, 36, 3];
    60,192,808 parameters, 11.51 GMACs. {_weights_doc("ResNet152_Weights")}""", arch="resnet152")
resnext50_32x4d = make_builder("resnext50_32x4d", _build, f"""ResNeXt-50 32×4d: ResNet-50 with 32 groups
    of 4 channels in each 3×3 conv; 25,028,904 parameters, 4.23 GMACs.
    {_weights_doc("ResNeXt50_32X4D_Weights")}""", arch="resnext50_32x4d")
resnext101_32x8d = make_builder("resnext101_32x8d", _build, f"""ResNeXt-101 32×8d: ResNet-101 with 32
    groups of 8 channels; 88,791,336 parameters. {_weights_doc("ResNeXt101_32X8D_Weights")}""",
                                arch="resnext101_32x8d")
resnext101_64x4d = make_builder("resnext101_64x4d", _build, f"""ResNeXt-101 64×4d: ResNet-101 with 64
    groups of 4 channels; 83,455,272 parameters. {_weights_doc("ResNeXt101_64X4D_Weights")}""",
                                arch="resnext101_64x4d")
wide_resnet50_2 = make_builder("wide_resnet50_2", _build, f"""Wide ResNet-50-2: ResNet-50 with
    bottlenecks twice as wide inside (the outer widths stay); 68,883,240 parameters,
    11.40 GMACs. {_weights_doc("Wide_ResNet50_2_Weights")}""", arch="wide_resnet50_2")
wide_resnet101_2 = make_builder("wide_resnet101_2", _build, f"""Wide ResNet-101-2: ResNet-101 with
    bottlenecks twice as wide inside; 126,886,696 parameters.
    {_weights_doc("Wide_ResNet101_2_Weights")}""", arch="wide_resnet101_2")
