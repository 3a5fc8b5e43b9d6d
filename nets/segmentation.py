"""Segmentation metrics and losses, and overlap-tile prediction.

* :func:`dice_per_class`, :func:`iou_per_class` — overlap of predicted and true label maps,
  per class: Dice ``2|P∩T| / (|P| + |T|)`` (the F1 score of the pixels) and IoU (Jaccard)
  ``|P∩T| / |P∪T|``. The two are monotone in each other: ``IoU = Dice / (2 − Dice)``.
* :func:`soft_dice_loss` and :class:`DiceCELoss` — Dice on softmax probabilities instead of
  hard labels (soft Dice: Milletari et al. 2016, V-Net, arXiv:1606.04797, whose binary
  form squares the terms in the denominator, ``2Σpg / (Σp² + Σg²)``; we use the unsquared,
  class-averaged, batch-pooled form with a smoothing ``eps``, as nnU-Net does), alone or
  added to cross entropy, as U-Net's successors train (e.g. nnU-Net).
* :func:`boundary_f_score` — precision and recall of the predicted object *edges* against
  the true ones, each edge pixel counting as matched when the other edge lies within
  ``tolerance`` pixels (the boundary F-measure of Martin et al. 2004, used by the DAVIS
  benchmark). Dice hardly notices a one-pixel blur of the outline of a large object; this does.
* :func:`predict_tiled` — the U-Net paper's overlap-tile strategy: predict a large image
  tile by tile, each tile's input window extended by a context margin, and stitch the
  centres.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["dice_per_class", "iou_per_class", "soft_dice_loss", "DiceCELoss",
           "boundary_map", "boundary_f_score", "error_by_distance", "predict_tiled",
           "unet_context"]


def _check_label_maps(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Both tensors of integer class indices with one shape (label maps, not logits)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError("pred and target must be tensors of class indices")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape (label maps, not logits), "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}; "
                         f"pass logits.argmax(1) as pred")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred and target must be integer class indices (use logits.argmax(1))")


def _check_labels(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    _check_label_maps(pred, target)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    for name, t in (("pred", pred), ("target", target)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}: "
                             f"min {t.min().item()}, max {t.max().item()}")


def _counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int):
    _check_labels(pred, target, num_classes)
    cm = torch.bincount(target.reshape(-1) * num_classes + pred.reshape(-1),
                        minlength=num_classes ** 2).reshape(num_classes, num_classes).double()
    inter = cm.diag()
    return inter, cm.sum(0), cm.sum(1)           # |P∩T|, |P|, |T| per class


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice ``2|P∩T| / (|P| + |T|)`` of each class over all pixels of the batch (``(C,)``,
    float64). A class absent from both prediction and target gets ``nan`` (nothing to
    score), so ``nanmean`` averages over the classes that occur."""
    inter, p, t = _counts(pred, target, num_classes)
    denom = p + t
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.full_like(denom, math.nan))


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """IoU ``|P∩T| / |P∪T|`` of each class (``(C,)``, float64, ``nan`` where absent from
    both). Same convention as :func:`nets.train.mean_iou`, which is its ``nanmean``."""
    inter, p, t = _counts(pred, target, num_classes)
    union = p + t - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, math.nan))


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0,
                   ignore_background: bool = False) -> torch.Tensor:
    """``1 − mean_c 2Σ p_c g_c / (Σ p_c + Σ g_c)`` with ``p = softmax(logits)`` and ``g``
    the one-hot target, sums over the batch and all pixels ("batch Dice"), ``eps`` added to
    numerator and denominator so empty classes score 1 instead of 0/0. This is nnU-Net's
    unsquared, class-averaged variant; V-Net's original (Milletari et al. 2016) is binary,
    has no ``eps`` and squares the denominator terms, ``2Σ p g / (Σ p² + Σ g²)``.
    ``logits (N, C, H, W)``, ``target (N, H, W)`` int64 → a scalar."""
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"soft_dice_loss needs logits (N, C, H, W) and target (N, H, W), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    num_classes = logits.shape[1]
    probs = logits.softmax(1)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)                  # (C,)
    if ignore_background:
        dice = dice[1:]
    return 1 - dice.mean()


class DiceCELoss(nn.Module):
    """``ce_weight · cross_entropy + dice_weight · soft_dice_loss`` (nnU-Net's default
    loss is this sum with both weights 1). Cross entropy gives every pixel a gradient from
    the start; Dice weighs each class by its size, so small objects count as much as the
    background."""

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, eps: float = 1.0) -> None:
        super().__init__()
        self.ce_weight, self.dice_weight, self.eps = ce_weight, dice_weight, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.ce_weight * F.cross_entropy(logits, target)
                + self.dice_weight * soft_dice_loss(logits, target, self.eps))


def boundary_map(labels: torch.Tensor) -> torch.Tensor:
    """Pixels whose 4-neighbourhood holds another label (both sides of every edge between
    two labels). ``labels (..., H, W)`` int → bool of the same shape. The image border is
    not an edge."""
    if labels.dim() < 2:
        raise ValueError(f"labels must have at least 2 dimensions (H, W), got {tuple(labels.shape)}")
    edge = torch.zeros_like(labels, dtype=torch.bool)
    dv = labels[..., 1:, :] != labels[..., :-1, :]
    dh = labels[..., :, 1:] != labels[..., :, :-1]
    edge[..., 1:, :] |= dv
    edge[..., :-1, :] |= dv
    edge[..., :, 1:] |= dh
    edge[..., :, :-1] |= dh
    return edge


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within Chebyshev distance ``radius`` of ``mask`` (a square neighbourhood)."""
    if radius == 0:
        return mask
    shape = mask.shape
    m = mask.reshape(-1, 1, *shape[-2:]).float()
    return (F.max_pool2d(m, 2 * radius + 1, stride=1, padding=radius) > 0).reshape(shape)


def boundary_f_score(pred: torch.Tensor, target: torch.Tensor,
                     tolerance: int = 1) -> Tuple[float, float, float]:
    """Boundary F-score of label maps ``pred`` and ``target`` (``(N, H, W)`` or ``(H, W)``):
    ``(F, precision, recall)``, where precision is the fraction of predicted edge pixels
    within ``tolerance`` pixels (square neighbourhood) of a true edge, and recall the
    fraction of true edge pixels within ``tolerance`` of a predicted one. Edges are
    :func:`boundary_map` of each map (between any two labels), pooled over the batch. With
    no edges on either side the score is 1; with edges on one side only, 0."""
    _check_label_maps(pred, target)
    if not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    bp, bt = boundary_map(pred), boundary_map(target)
    n_p, n_t = bp.sum().item(), bt.sum().item()
    if n_p == 0 and n_t == 0:
        return 1.0, 1.0, 1.0
    if n_p == 0 or n_t == 0:
        return 0.0, float(n_p == 0), float(n_t == 0)
    precision = (bp & _dilate(bt, tolerance)).sum().item() / n_p
    recall = (bt & _dilate(bp, tolerance)).sum().item() / n_t
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f, precision, recall


def error_by_distance(pred: torch.Tensor, target: torch.Tensor,
                      max_distance: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel error rate as a function of the distance to the true object edge:
    ``(error, count)``, both ``(max_distance + 1,)``; bin ``d < max_distance`` holds the
    pixels at Chebyshev distance exactly ``d`` from :func:`boundary_map` of ``target``
    (``d = 0``: on the edge), the last bin everything at ``max_distance`` or farther.
    A net that blurs outlines errs near the edge; one that misses objects errs everywhere."""
    _check_label_maps(pred, target)
    if not isinstance(max_distance, int) or max_distance < 1:
        raise ValueError(f"max_distance must be a positive int, got {max_distance!r}")
    edge = boundary_map(target)
    wrong = pred != target
    error = torch.zeros(max_distance + 1, dtype=torch.float64)
    count = torch.zeros(max_distance + 1, dtype=torch.long)
    seen = torch.zeros_like(edge)
    for d in range(max_distance + 1):
        ring = (~seen) if d == max_distance else (_dilate(edge, d) & ~seen)
        count[d] = ring.sum()
        error[d] = (wrong & ring).sum().item() / max(count[d].item(), 1)
        seen |= ring
    return error, count


def unet_context(depth: int) -> int:
    """Pixels of context each side of an output pixel of a U-Net of ``depth`` levels with
    3×3 convs (two per level): ``6 · 2^depth − 4`` (92 for depth 4: the paper's
    ``(572 − 388) / 2``). In the padded net add up to ``2^depth − 1`` on one side or the
    other, depending on where the pixel sits in the pooling grid; ``unet_context(depth) +
    2**depth`` is a safe margin for :func:`predict_tiled`."""
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    return 6 * 2 ** depth - 4


@torch.no_grad()
def predict_tiled(model: nn.Module, image: torch.Tensor, tile: int, margin: int,
                  align: int = 1, num_outputs: Optional[int] = None) -> torch.Tensor:
    """Overlap-tile prediction (Ronneberger et al. 2015, Fig. 2) for a *padded* network
    (output the size of its input).

    The output is cut into ``tile × tile`` squares (the last ones smaller where the image
    does not divide). Each is predicted from an input window that extends ``margin``
    pixels beyond it on every side (clipped to the image, so at the image's own border the
    window ends where the whole image ends), and only the window's centre is kept.

    Equal to ``model(image)`` (up to float rounding) when (1) ``margin`` covers the
    receptive-field radius (:func:`unet_context` for a U-Net), so that a tile's zero
    padding never reaches a kept pixel; (2) every window starts at a multiple of ``align``
    (``2**depth`` for a U-Net, so its poolings see the same 2×2 blocks as on the whole
    image; windows are moved back to the previous multiple); (3) the network is
    translation-equivariant apart from borders (bilinear upsampling with
    ``align_corners=True`` is not: it stretches by ``(2h − 1)/(h − 1)``, which depends on the
    map size); (4) the model is in eval mode (batch statistics would differ per tile: the
    model is put in eval mode here and restored after).

    ``image (N, C, H, W)`` → logits ``(N, num_outputs, H, W)`` (``num_outputs`` defaults to
    ``model.num_classes``).
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise ValueError(f"image must be a tensor (N, C, H, W), got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    for name, value, low in (("tile", tile, 1), ("margin", margin, 0), ("align", align, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    num_outputs = num_outputs or getattr(model, "num_classes", None)
    if num_outputs is None:
        raise ValueError("pass num_outputs (the model has no num_classes attribute)")
    n, _, h, w = image.shape
    out = image.new_zeros(n, num_outputs, h, w)
    was_training = model.training
    model.eval()
    try:
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                y0 = max(0, top - margin) // align * align
                x0 = max(0, left - margin) // align * align
                y1, x1 = min(h, bottom + margin), min(w, right + margin)
                pred = model(image[..., y0:y1, x0:x1])
                if pred.shape[-2:] != (y1 - y0, x1 - x0):
                    raise ValueError(f"predict_tiled needs a padded model (output the size of "
                                     f"its input); got {tuple(pred.shape[-2:])} for a "
                                     f"{y1 - y0}x{x1 - x0} window")
                out[..., top:bottom, left:right] = pred[..., top - y0:bottom - y0,
                                                        left - x0:right - x0]
    finally:
        model.train(was_training)
    return out
