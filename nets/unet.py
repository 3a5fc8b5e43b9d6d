"""U-Net: an encoder that pools, a decoder that upsamples, and skips that carry the detail.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, arXiv:1505.04597.

Laid out like the paper's Fig. 1 (and like milesial's Pytorch-UNet): ``inc`` (the first
double conv), ``downs`` (2×2 max pool → double conv, the contracting path), ``ups``
(upsample → join the skip → double conv, the expanding path) and ``outc`` (1×1 conv to
class logits).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChecksInput, ConvNormAct, LayerFactory, Size2d, as_pair, check_image_batch

__all__ = ["AttentionGate", "DoubleConv", "Down", "Up", "UNet", "center_crop", "pad_to"]

# builds a gate from (skip_channels, gating_channels); called as gate(skip, g) -> gated skip
GateFactory = Callable[[int, int], nn.Module]


class DoubleConv(nn.Sequential):
    """``(3×3 conv → [BN] → ReLU) × 2``: the unit of every level of the U.

    ``padding=1`` keeps the map size; ``padding=0`` is the paper's valid convolution,
    which trims 2 pixels from each side (``H → H - 4``). ``mid_channels`` is the width
    after the first conv (Pytorch-UNet's bilinear decoder uses half the input width there).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: Optional[int] = None,
        padding: int = 1,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
    ) -> None:
        mid_channels = mid_channels or out_channels
        super().__init__(
            ConvNormAct(in_channels, mid_channels, 3, padding=padding, norm_layer=norm_layer),
            ConvNormAct(mid_channels, out_channels, 3, padding=padding, norm_layer=norm_layer),
        )


class Down(nn.Sequential):
    """One step down the contracting path: ``2×2 max pool (stride 2) → DoubleConv``.
    ``(N, C_in, H, W) → (N, C_out, ⌊H/2⌋ (-4 if unpadded), ⌊W/2⌋ (-4 if unpadded))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        padding: int = 1,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            nn.MaxPool2d(2),
            DoubleConv(in_channels, out_channels, padding=padding, norm_layer=norm_layer),
        )


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The central ``size = (h, w)`` window of ``x`` (the paper's crop of the skip map:
    valid convolutions lose border pixels, so the encoder map is larger than the
    upsampled decoder map it joins)."""
    h, w = size
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def pad_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``x`` symmetrically (the odd pixel goes right/bottom) to ``size = (h, w)``.

    With padded convolutions an odd side ``H`` pools to ``⌊H/2⌋`` and upsamples back to
    ``H - 1``: the upsampled map is one row/column short of its skip, and this puts it back.
    """
    dh = size[0] - x.shape[-2]
    dw = size[1] - x.shape[-1]
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al., "Attention U-Net:
    Learning Where to Look for the Pancreas", MIDL 2018, arXiv:1804.03999).

    A per-pixel weight in (0, 1) for the skip map ``x``, computed from ``x`` and the
    decoder's gating signal ``g``::

        α = σ(ψ(ReLU(W_x x + W_g g)))        (1×1 convs W_x, W_g: C → C_int; ψ: C_int → 1)
        output = α · x

    so the decoder can suppress encoder features from irrelevant regions instead of
    concatenating them all ("indiscriminate skip fusion"). Simplification: the paper takes
    ``g`` from the coarser level and strides ``W_x`` by 2 to meet it; here ``g`` is the
    decoder map already upsampled to the skip's size (as many public implementations do).
    ``x (N, C_x, H, W)``, ``g (N, C_g, H, W) → (N, C_x, H, W)``; ``self.last_alpha`` keeps
    the last ``α (N, 1, H, W)`` for plotting.
    """

    def __init__(self, skip_channels: int, gating_channels: int,
                 inter_channels: Optional[int] = None) -> None:
        super().__init__()
        inter_channels = inter_channels or max(1, skip_channels // 2)
        self.w_x = nn.Conv2d(skip_channels, inter_channels, 1, bias=False)
        self.w_g = nn.Conv2d(gating_channels, inter_channels, 1)
        self.psi = nn.Conv2d(inter_channels, 1, 1)
        self.last_alpha: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(x) + self.w_g(g))))   # (N, 1, H, W)
        self.last_alpha = alpha.detach()
        return alpha * x


class Up(nn.Module):
    """One step up the expanding path: upsample ×2, join the skip, ``DoubleConv``.

    * ``bilinear=False``: the paper's "up-convolution", ``ConvTranspose2d(k=2, s=2)``,
      which also halves the channels; the concatenation restores ``in_channels``.
    * ``bilinear=True``: parameter-free bilinear upsampling (``align_corners=True``), as
      Pytorch-UNet; the channels are not halved here, so the level below must already
      deliver ``in_channels // 2`` (UNet halves its bottleneck and decoder outputs) and the
      double conv narrows to ``in_channels // 2`` after its first conv.

    Joining the skip: ``padded=True`` pads the upsampled map to the skip's size (odd sides);
    ``padded=False`` center-crops the skip to the upsampled map's size (the paper).
    Skip first, upsampled second in the concatenation. ``skip=False`` (an ablation) joins
    zeros in the skip's place: the same layers and parameter count, but no information
    from the encoder at this level. ``gate_layer`` (e.g. :class:`AttentionGate`) reweights
    the skip from the upsampled decoder map before the join. Shapes:
    ``x (N, C_in or C_in/2, h, w)``, ``skip (N, C_in/2, H ≥ 2h, W ≥ 2w) → (N, C_out, ·, ·)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bilinear: bool = False,
        padded: bool = True,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
        skip: bool = True,
        gate_layer: Optional[GateFactory] = None,
    ) -> None:
        super().__init__()
        padding = 1 if padded else 0
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2, padding, norm_layer)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels, padding=padding, norm_layer=norm_layer)
        self.padded = padded
        self.skip = skip
        if gate_layer is not None:                       # registered only when used, so a
            self.gate = gate_layer(in_channels // 2, in_channels // 2)   # plain U-Net's
        else:                                            # state_dict names do not change
            self.gate = None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)                                   # (N, C_in/2, 2h, 2w)
        if self.padded:
            x = pad_to(x, skip.shape[-2:])               # (N, C_in/2, H, W)
        else:
            skip = center_crop(skip, x.shape[-2:])       # (N, C_in/2, 2h, 2w)
        if not self.skip:
            skip = torch.zeros_like(skip)                # ablation: nothing from the encoder
        elif self.gate is not None:
            skip = self.gate(skip, x)                    # (N, C_in/2, ·, ·) reweighted per pixel
        x = torch.cat([skip, x], dim=1)                  # (N, C_in, ·, ·)
        return self.conv(x)                              # (N, C_out, ·, · (-4 if unpadded))


class UNet(ChecksInput, nn.Module):
    """U-Net (Ronneberger et al. 2015, arXiv:1505.04597).

    Level ``i`` of the U has ``base_width · 2^i`` channels, ``i = 0 … depth``; every
    step down halves the map (2×2 max pool) and doubles the channels, every step up
    doubles the map and joins the encoder map of the same level (the skip connection),
    and a 1×1 conv maps ``base_width`` features to ``num_classes`` logits per pixel
    (apply softmax over classes, or a sigmoid when ``num_classes=1``).

    * ``padded=True`` (default, as Pytorch-UNet): 3×3 convs with padding 1, so
      ``(N, in_channels, H, W) → (N, num_classes, H, W)`` for any ``H, W ≥ 2^depth``
      (the minimum that survives ``depth`` poolings). Odd sides pool with floor and the
      upsampled map is zero-padded back to its skip's size (``pad_to``).
    * ``padded=False``: the paper's valid convolutions with crop-and-concat; each side
      shrinks by ``12 · 2^depth - 8`` (572 → 388 for ``depth=4``), and only sizes whose
      pooled maps are all even are accepted (``UNet.nearest_valid_sizes``).
    * ``bilinear=True``: bilinear upsampling instead of 2×2 up-convolutions, with the
      bottleneck and decoder widths halved as Pytorch-UNet (17.3M instead of 31.0M
      parameters at ``base_width=64``).
    * ``norm_layer`` (default ``nn.BatchNorm2d``, called with a channel count): Conv (no
      bias) → norm → ReLU everywhere, encoder and decoder; ``None``: Conv (with bias) →
      ReLU, as in the paper (2015, before normalisation layers were common in U-Nets).

    Differences from the paper: the defaults (padding, BN) follow Pytorch-UNet; there is
    no dropout at the end of the contracting path; weights keep PyTorch's default init
    (the paper draws from ``N(0, 2/fan_in)``). ``UNet(1, 2, padded=False,
    norm_layer=None)`` is the paper's network: 31,030,658 parameters.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base_width: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        padded: bool = True,
        norm_layer: Optional[LayerFactory] = nn.BatchNorm2d,
        skip_connections: bool = True,
        gate_layer: Optional[GateFactory] = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("base_width", base_width), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UNet needs {name} to be a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.bilinear = bilinear
        self.padded = padded
        self.skip_connections = skip_connections

        widths = [base_width * 2 ** i for i in range(depth + 1)]
        factor = 2 if bilinear else 1  # bilinear: the level below hands up half the channels
        padding = 1 if padded else 0

        self.inc = DoubleConv(in_channels, widths[0], padding=padding, norm_layer=norm_layer)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1] // (factor if i + 1 == depth else 1), padding, norm_layer)
            for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i] // (factor if i > 0 else 1), bilinear, padded, norm_layer,
               skip=skip_connections, gate_layer=gate_layer)
            for i in reversed(range(depth)))
        self.outc = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.skip_nested_checks()

    # ------------------------------------------------------------------ sizes
    @staticmethod
    def unpadded_output_size(size: int, depth: int = 4) -> Optional[int]:
        """Output side of the unpadded U-Net for an input side ``size``, or ``None`` if
        ``size`` does not work (a pooled map would be odd, or a map would vanish).

        Walks the network: two valid 3×3 convs take 4 pixels, a 2×2 pool halves (and
        needs an even side), a 2×2 up-conv doubles. In closed form: valid sizes are
        ``size ≡ -4 (mod 2^depth)``, and ``out = size - (12 · 2^depth - 8)`` must be ≥ 1.
        """
        s = size
        for _ in range(depth):          # contracting path
            s -= 4                      # DoubleConv
            if s < 2 or s % 2:
                return None             # 2x2 max pooling needs an even map
            s //= 2
        s -= 4                          # bottleneck DoubleConv
        for _ in range(depth):          # expanding path
            if s < 1:
                return None
            s = 2 * s - 4               # up-conv x2, then DoubleConv
        return s if s >= 1 else None

    @staticmethod
    def nearest_valid_sizes(size: int, depth: int = 4) -> Tuple[Optional[int], int]:
        """The valid input sides of the unpadded U-Net nearest to ``size``: ``(largest
        valid ≤ size or None, smallest valid ≥ size)``; both equal ``size`` if it is valid."""
        step = 2 ** depth
        below: Optional[int] = size - (size + 4) % step   # the candidates are k·2^depth − 4
        while below is not None and UNet.unpadded_output_size(below, depth) is None:
            below = below - step if below > step else None
        above = size + (-(size + 4)) % step
        while UNet.unpadded_output_size(above, depth) is None:
            above += step
        return below, above

    def output_size(self, input_size: Size2d) -> Tuple[int, int]:
        """``(H_out, W_out)`` of the logits for an ``(H, W)`` input (raises like ``forward``)."""
        h, w = as_pair(input_size)
        self._check_size(h, w)
        if self.padded:
            return h, w
        return self.unpadded_output_size(h, self.depth), self.unpadded_output_size(w, self.depth)

    def _check_size(self, h: int, w: int) -> None:
        owner = f"UNet(depth={self.depth}, padded={self.padded})"
        if self.padded:
            minimum = 2 ** self.depth
            if h < minimum or w < minimum:
                raise ValueError(
                    f"{owner} needs images of at least {minimum}x{minimum} pixels "
                    f"(2**depth, so that {self.depth} poolings leave a map), got {h}x{w}")
            return
        for side, s in (("height", h), ("width", w)):
            if self.unpadded_output_size(s, self.depth) is None:
                below, above = self.nearest_valid_sizes(s, self.depth)
                nearest = (f"{below} or {above}" if below is not None
                           else f"{above} (the smallest)")
                raise ValueError(
                    f"{owner}: input {side} {s} does not work with valid (unpadded) "
                    f"convolutions, where every pooled map must be even; nearest valid "
                    f"sizes: {nearest} (valid sizes are k*2**depth - 4 with output "
                    f"size - {12 * 2 ** self.depth - 8} >= 1)")

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_image_batch(x, self.in_channels, owner="UNet")
            self._check_size(x.shape[-2], x.shape[-1])
        skips: List[torch.Tensor] = []
        x = self.inc(x)                         # (N, w, H, W)       w = base_width
        for down in self.downs:
            skips.append(x)
            x = down(x)                         # (N, 2w, H/2, W/2) ... (N, 2^depth w, H/2^depth, W/2^depth)
        for up in self.ups:                     #   (bottleneck width halved if bilinear)
            x = up(x, skips.pop())              # (N, 2^(depth-1) w, ...) ... back to (N, w, H, W)
        return self.outc(x)                     # (N, num_classes, H, W)   (H - 12*2^depth + 8 unpadded)
