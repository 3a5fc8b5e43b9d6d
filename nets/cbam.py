"""CBAM: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module",
arXiv:1807.06521.

CBAM refines a feature map F (C × H × W) twice, first *what* to look at, then *where*:

    F'  = M_c(F)  ⊗ F      M_c(F)  = σ( MLP(AvgPool(F)) + MLP(MaxPool(F)) )     (C × 1 × 1)
    F'' = M_s(F') ⊗ F'     M_s(F') = σ( f^{k×k}([AvgPool_c(F'); MaxPool_c(F')]) ) (1 × H × W)

M_c is SE's channel gate with a second, max-pooled descriptor fed through the *same* MLP;
M_s pools over channels instead of space (mean and max at each pixel, 2 × H × W) and a
single k × k convolution (k = 7 in the paper) turns that into one weight per pixel. ⊗
broadcasts: M_c over H × W, M_s over the channels. In a ResNet, CBAM sits where SE sits —
after the block's last norm, before the residual addition — i.e. in the ``attn_layer`` slot
of :class:`nets.resnet.ResNet`.

Matching the authors' code (github.com/Jongchan/attention-module, ``MODELS/cbam.py``):
their MLP layers have biases and their spatial gate is a 7×7 conv without bias followed by
a one-channel BatchNorm, so CBAM-ResNet-50 has 28,089,624 parameters: SE-ResNet-50 plus
2·49 + 2 = 100 per block. Their spatial gate concatenates [max; mean] (``ChannelPool``:
``torch.cat((max, mean), dim=1)``); we keep the paper's [mean; max]. The function is the
same up to the order of the conv's two input channels, so it only matters when loading their
weights: flip the spatial conv's weight along dim 1 (``w.flip(1)``, see
:func:`authors_spatial_weight`). Their BN uses momentum 0.01
and starts with γ = 0 (so M_s starts at σ(0) = 1/2); here the norm layer is injected and
initialised by the host network like every other norm (γ = 1); call
:func:`zero_init_spatial_gates` on the built model for the authors' start.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import torch
from torch import nn

from .layers import ChecksInput, ConvNormAct, LayerFactory, check_image_batch, make_divisible
from .resnet import ResNet, attention_resnet
from .weights import Weights, make_builder

__all__ = [
    "ChannelAttention",
    "SpatialAttention",
    "CBAM",
    "cbam_resnet18",
    "cbam_resnet34",
    "cbam_resnet50",
    "cbam_resnet101",
    "cbam_resnet152",
    "authors_spatial_weight",
    "zero_init_spatial_gates",
]

POOL_TYPES = ("avg", "max")
ORDERS = ("channel-spatial", "spatial-channel")


def _check_pool_types(pool_types: Any) -> tuple:
    if isinstance(pool_types, str):
        pool_types = (pool_types,)
    pool_types = tuple(pool_types)
    repeated = len(set(pool_types)) < len(pool_types)
    if not pool_types or repeated or any(p not in POOL_TYPES for p in pool_types):
        raise ValueError(f"pool_types must be a non-empty selection of {POOL_TYPES} without repeats, "
                         f"got {pool_types!r}")
    return pool_types


def authors_spatial_weight(weight: torch.Tensor) -> torch.Tensor:
    """Convert a spatial-gate conv weight ``(1, 2, k, k)`` between the authors' input order
    [max; mean] and ours [mean; max] (the conversion is its own inverse)."""
    if weight.dim() != 4 or weight.shape[:2] != (1, 2):
        raise ValueError("expected a spatial-gate conv weight of shape (1, 2, k, k), "
                         f"got {tuple(weight.shape)}")
    return weight.flip(1)


class ChannelAttention(ChecksInput, nn.Module):
    """CBAM's channel attention map ``M_c``: ``(N, C, H, W) -> (N, C, 1, 1)`` in (0, 1).

    The shared MLP is two 1×1 convolutions with bias (``fc1``: C → C/r, ``fc2``: C/r → C),
    the same parameters as the authors' two ``Linear`` layers. The hidden width is
    ``make_divisible(channels / reduction, divisor)``, C / r rounded to a multiple of
    ``divisor`` and at least ``divisor``. With the default ``divisor=1`` that is exactly the
    authors' ``C // r`` for every ResNet width (C / 16 is a whole number there), but never
    the zero channels that ``C // 16`` gives for fewer than 16 channels. SE in ``nets``
    rounds to multiples of 8 instead, as timm does; pass ``divisor=8`` for the same here.

    ``pool_types`` chooses the descriptors whose MLP outputs are summed: ``("avg", "max")``
    (the paper's CBAM, the default), ``("avg",)`` (SE's squeeze with biases) or ``("max",)``:
    the paper's ablation of the channel branch. The parameters do not depend on it.

    Shapes: ``(N, C, H, W) -> (N, C, 1, 1)``.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU,
        pool_types: Any = POOL_TYPES,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"ChannelAttention needs at least 1 channel, got {channels}")
        if reduction <= 0:
            raise ValueError(f"reduction must be positive, got {reduction}")
        if not isinstance(divisor, int) or divisor < 1:
            raise ValueError(f"divisor must be a positive int (the hidden width is rounded to a "
                             f"multiple of it, so 0 would give a zero-width MLP), got {divisor!r}")
        self.channels = channels
        self.pool_types = _check_pool_types(pool_types)
        self.hidden_channels = make_divisible(channels / reduction, divisor)
        self.fc1 = nn.Conv2d(channels, self.hidden_channels, kernel_size=1, bias=True)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(self.hidden_channels, channels, kernel_size=1, bias=True)

    def mlp(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(z)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.channels, owner="ChannelAttention")
        logits = 0
        if "avg" in self.pool_types:
            logits = logits + self.mlp(x.mean(dim=(2, 3), keepdim=True))   # (N, C, 1, 1)
        if "max" in self.pool_types:
            logits = logits + self.mlp(x.amax(dim=(2, 3), keepdim=True))   # (N, C, 1, 1)
        return torch.sigmoid(logits)                                        # (N, C, 1, 1)

    def extra_repr(self) -> str:
        pools = "" if self.pool_types == POOL_TYPES else f", pool_types={self.pool_types}"
        return f"channels={self.channels}, hidden_channels={self.hidden_channels}{pools}"


class SpatialAttention(ChecksInput, nn.Module):
    """CBAM's spatial attention map ``M_s``: ``(N, C, H, W) -> (N, 1, H, W)`` in (0, 1).

    Mean and max over the channels give a 2-channel map; a ``kernel_size`` × ``kernel_size``
    convolution (padding ``kernel_size // 2``, so H × W is kept; the paper compares 3 and 7
    and prefers 7) followed by ``norm_layer`` (as in the authors' code; ``None`` for a
    plain conv with bias) and a sigmoid gives one weight per pixel. Works for any number of
    channels. The kernel must be odd: an even kernel cannot keep the size with symmetric
    padding.
    """

    def __init__(
        self,
        kernel_size: int = 7,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"SpatialAttention needs an odd kernel_size (the paper uses 3 or 7) so that "
                f"padding kernel_size // 2 keeps H x W; got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.conv = ConvNormAct(2, 1, kernel_size, norm_layer=norm_layer, activation_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, owner="SpatialAttention")
        pooled = torch.cat([x.mean(dim=1, keepdim=True),         # (N, 1, H, W)
                            x.amax(dim=1, keepdim=True)], dim=1)  # (N, 2, H, W)
        return torch.sigmoid(self.conv(pooled))                    # (N, 1, H, W)


class CBAM(ChecksInput, nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention,
    each multiplying the features. ``(N, C, H, W) -> (N, C, H, W)``, any H, W ≥ 1.

    For the paper's ablations: ``pool_types`` goes to :class:`ChannelAttention`;
    ``order="spatial-channel"`` applies the spatial map first (the paper's arrangement
    ablation finds channel-then-spatial, the default, slightly better). Neither changes the
    parameters."""

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        kernel_size: int = 7,
        divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
        pool_types: Any = POOL_TYPES,
        order: str = "channel-spatial",
    ) -> None:
        super().__init__()
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.channels = channels
        self.order = order
        self.channel_attention = ChannelAttention(channels, reduction, divisor, act_layer,
                                                  pool_types=pool_types)
        self.spatial_attention = SpatialAttention(kernel_size, norm_layer)
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.channels, owner="CBAM")
        if self.order == "spatial-channel":
            x = x * self.spatial_attention(x)    # where first ...
            return x * self.channel_attention(x)  # ... then what
        x = x * self.channel_attention(x)    # (N, C, H, W) * (N, C, 1, 1): what
        x = x * self.spatial_attention(x)    # (N, C, H, W) * (N, 1, H, W): where
        return x

    def extra_repr(self) -> str:
        return "" if self.order == "channel-spatial" else f"order={self.order!r}"


def zero_init_spatial_gates(model: nn.Module) -> int:
    """Initialise every CBAM spatial gate in ``model`` as the authors' code does: the
    gate's BatchNorm γ is set to 0 (``MODELS/model_resnet.py`` zeroes the weight of every
    ``SpatialGate`` BN), so each untrained spatial map is σ(0) = 1/2 at every pixel, in
    train and in eval mode. Call it after building the model (the host network's init
    sets every BN's γ to 1). Returns the number of gates changed; a model without a CBAM
    spatial gate with a norm layer is a ``ValueError``.

    The other difference, the authors' BN momentum of 0.01 (PyTorch's default is 0.1), is
    not changed here: pass ``norm_layer=partial(nn.BatchNorm2d, momentum=0.01)`` to
    :class:`CBAM` for it."""
    bns = [m.conv[1] for m in model.modules()
           if isinstance(m, SpatialAttention) and len(m.conv) > 1 and hasattr(m.conv[1], "weight")]
    if not bns:
        raise ValueError("zero_init_spatial_gates found no CBAM spatial gate with a norm layer in the model")
    with torch.no_grad():
        for bn in bns:
            nn.init.zeros_(bn.weight)
    return len(bns)


def _cbam_resnet(arch: str, *, weights: Optional[Weights], progress: bool, num_classes: int,
                 reduction: float = 16, kernel_size: int = 7, **kwargs: Any) -> ResNet:
    attn = partial(CBAM, reduction=reduction, kernel_size=kernel_size)
    return attention_resnet(arch, attn, "CBAM-ResNet", weights=weights, progress=progress,
                            num_classes=num_classes, **kwargs)


_OPTIONS = ("``reduction`` (r, default 16) and ``kernel_size`` (of the spatial gate, default 7) "
            "reach every CBAM; other keywords go to :class:`nets.resnet.ResNet`. No pretrained "
            "weights (torchvision has none).")
cbam_resnet18 = make_builder("cbam_resnet18", _cbam_resnet, f"""CBAM-ResNet-18: ResNet-18 with CBAM in
    each of its 8 basic blocks. {_OPTIONS}""", arch="resnet18")
cbam_resnet34 = make_builder("cbam_resnet34", _cbam_resnet, f"""CBAM-ResNet-34: ResNet-34 with CBAM in
    each of its 16 basic blocks. {_OPTIONS}""", arch="resnet34")
cbam_resnet50 = make_builder("cbam_resnet50", _cbam_resnet, f"""CBAM-ResNet-50: ResNet-50 ("V1.5", as
    torchvision) with CBAM in each of its 16 bottlenecks; 28,089,624 parameters, as the
    authors' code. {_OPTIONS}""", arch="resnet50")
cbam_resnet101 = make_builder("cbam_resnet101", _cbam_resnet, f"""CBAM-ResNet-101: ResNet-101 with CBAM
    in each of its 33 bottlenecks. {_OPTIONS}""", arch="resnet101")
cbam_resnet152 = make_builder("cbam_resnet152", _cbam_resnet, f"""CBAM-ResNet-152: ResNet-152 with CBAM
    in each of its 50 bottlenecks. {_OPTIONS}""", arch="resnet152")
