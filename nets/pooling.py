"""Global pooling, selected by name, and the dual-pooling classifier head.

A classification backbone ends in a feature map (N, C, H, W) whose H × W depends on the input
size. *Global* pooling reduces each channel to one number, whatever H and W are — which is
why a network that pools adaptively accepts any input size, and one that ends in a fixed
``AvgPool2d(7)`` only works for 224 × 224 images.

    avg        mean over H × W                 (N, C)   "what is there, on average"
    max        max over H × W                  (N, C)   "is it anywhere, strongly"
    avgmax     ½ (avg + max)                   (N, C)
    catavgmax  [avg; max] along the channels   (N, 2C)

The names follow timm's ``SelectAdaptivePool2d``. Max pooling favours the strongest local
evidence, average pooling the whole image; concatenating both keeps both descriptors (CBAM's
channel attention uses the same pair).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .layers import ChecksInput, LayerFactory, check_image_batch

__all__ = ["POOL_MODES", "feature_multiplier", "GlobalPool2d", "DualPoolHead", "pool_linear_head",
           "HeadedNet"]

POOL_MODES = ("avg", "max", "avgmax", "catavgmax")


def feature_multiplier(mode: str) -> int:
    """How many output features a pooling mode gives per input channel: 2 for
    "catavgmax", 1 otherwise."""
    _check_mode(mode)
    return 2 if mode == "catavgmax" else 1


def _check_mode(mode: str) -> None:
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOL_MODES)}")


class GlobalPool2d(ChecksInput, nn.Module):
    """Global pooling over H × W by name: ``(N, C, H, W) -> (N, k·C)`` with ``flatten=True``
    or ``(N, k·C, 1, 1)`` without, where ``k = feature_multiplier(mode)``. No parameters;
    any H, W ≥ 1."""

    def __init__(self, mode: str = "avg", flatten: bool = True) -> None:
        super().__init__()
        _check_mode(mode)
        self.mode = mode
        self.flatten = flatten

    def out_channels(self, in_channels: int) -> int:
        """Channels of the output for ``in_channels`` input channels."""
        return feature_multiplier(self.mode) * in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, owner="GlobalPool2d")
        if self.mode == "avg":
            y = x.mean(dim=(2, 3), keepdim=True)                        # (N, C, 1, 1)
        elif self.mode == "max":
            y = x.amax(dim=(2, 3), keepdim=True)                        # (N, C, 1, 1)
        elif self.mode == "avgmax":
            y = 0.5 * (x.mean(dim=(2, 3), keepdim=True) + x.amax(dim=(2, 3), keepdim=True))
        else:  # "catavgmax"
            y = torch.cat([x.mean(dim=(2, 3), keepdim=True),
                           x.amax(dim=(2, 3), keepdim=True)], dim=1)    # (N, 2C, 1, 1)
        return y.flatten(1) if self.flatten else y

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, flatten={self.flatten}"


class DualPoolHead(ChecksInput, nn.Module):
    """Classifier head on concatenated global average and max pooling.

        (N, C, H, W) → [avg; max] (N, 2C, 1, 1) → 1×1 conv (N, hidden, 1, 1) → act
                     → flatten (N, hidden) → dropout → linear (N, num_classes)

    Concatenating both global poolings before the classifier is fastai's
    ``AdaptiveConcatPool2d`` head (Howard and Gugger, arXiv:2002.04688) and timm's
    ``catavgmax``. Every width is derived from ``in_channels``, so the head fits any
    backbone: 512 channels for ResNet-18/34, 2048 for ResNet-50 and up. ``hidden`` defaults
    to ``in_channels``.

    Activation: by default (``act_layer=None``) there is no nonlinearity between the 1×1
    reduction and the linear layer. Two linear maps in a row are one linear map: in eval
    mode (dropout off) the head equals a single ``Linear(2C, num_classes)`` with weight
    ``W_fc · W_reduce`` and bias ``W_fc · b_reduce + b_fc``; the reduction only adds
    parameters and a place for dropout. Pass ``act_layer=nn.ReLU`` to make it a real
    two-layer MLP.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: Optional[int] = None,
        dropout: float = 0.5,
        act_layer: Optional[LayerFactory] = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"DualPoolHead needs in_channels >= 1 and num_classes >= 1, got "
                             f"{in_channels} and {num_classes}")
        hidden = in_channels if hidden is None else hidden
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.in_channels = in_channels
        self.pool = GlobalPool2d("catavgmax", flatten=False)
        self.reduce = nn.Conv2d(self.pool.out_channels(in_channels), hidden, kernel_size=1)
        self.act = act_layer() if act_layer is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)
        self.skip_nested_checks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner="DualPoolHead")
        x = self.pool(x)                       # (N, 2C, 1, 1)
        x = self.act(self.reduce(x))           # (N, hidden, 1, 1)
        x = self.dropout(x.flatten(1))         # (N, hidden)
        return self.fc(x)                      # (N, num_classes)


def pool_linear_head(in_channels: int, num_classes: int, mode: str = "avg") -> nn.Sequential:
    """The plain classifier head with a chosen global pooling: ``GlobalPool2d(mode)`` then one
    ``Linear(k·C, num_classes)``, ``k = feature_multiplier(mode)``.

        (N, C, H, W) → pool (N, k·C) → linear (N, num_classes)

    ``mode="avg"`` is the head of ResNet and of Network in Network's global average pooling
    (Lin et al., arXiv:1312.4400) followed by a linear layer; ``"max"``, ``"avgmax"`` (the sum
    halved) and ``"catavgmax"`` (both, concatenated) swap only the pooling, so comparing them
    changes one thing at a time (``catavgmax`` also doubles the linear layer's inputs).
    """
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"pool_linear_head needs in_channels >= 1 and num_classes >= 1, got "
                         f"{in_channels} and {num_classes}")
    pool = GlobalPool2d(mode)
    return nn.Sequential(pool, nn.Linear(pool.out_channels(in_channels), num_classes))


class HeadedNet(nn.Module):
    """A backbone's features with another classifier head on top:
    ``head(backbone.forward_features(x))``.

    ``backbone`` is any ``nets`` classifier with ``forward_features`` (``CifarResNet``,
    ``ResNet``, ...); its own pooling and ``fc`` are not used and are removed here, so
    :func:`nets.count_params` counts only what runs. ``head`` maps ``(N, C, H, W)`` to
    logits, e.g. :class:`DualPoolHead` or :func:`pool_linear_head`.

        >>> net = HeadedNet(nets.cifar_resnet(8, width=16), DualPoolHead(64, 10))
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(backbone, "forward_features", None)):
            raise ValueError(f"HeadedNet needs a backbone with forward_features(); "
                             f"{type(backbone).__name__} has none")
        for name in ("avgpool", "fc"):
            if hasattr(backbone, name):
                setattr(backbone, name, nn.Identity())
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))     # (N, num_classes)
