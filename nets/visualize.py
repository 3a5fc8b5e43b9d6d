"""Looking inside a network: record what named layers compute, with forward hooks.

A forward hook (``module.register_forward_hook(fn)``) is called after ``module.forward``
with ``(module, inputs, output)``; it sees the tensors exactly as the next layer will. The
helpers here register hooks for the duration of a ``with`` block or one call and always
remove them again — also when the forward pass raises — so a model never keeps a stale
hook that slows it down or leaks memory.

* :func:`capture` — a context manager that records the outputs (and, on request, the
  inputs) of named submodules during the forward passes run inside it.
* :func:`activations` — one forward pass in eval mode without gradients, returning the
  recorded outputs.
* :func:`shape_table` — per layer: type, input shapes, output shape, own parameters; the
  shape walk-through of a model generated from the model, never typed by hand.

Looking at what was recorded:

* :func:`map_grid`, :func:`show_feature_maps`, :func:`show_kernels` — feature maps and
  first-layer kernels tiled into one image, with the normalisation stated (each panel
  scaled on its own, or all panels on one shared scale).
* :func:`weight_stats`, :func:`show_weight_histograms` — per-parameter mean, std, abs-max,
  sparsity and norm (parameters only: BatchNorm's running statistics are buffers that
  describe activations, not weights), and their histograms, optionally against a reference
  copy of the model (e.g. its initial weights).
* :func:`class_activation_map` (CAM, Zhou et al. 2016, arXiv:1512.04150) and
  :func:`grad_cam` (Selvaraju et al. 2017, arXiv:1610.02391) — where in the image the
  evidence for a class lies.
* :func:`localization_scores` — how well a map falls on an object mask, with the score
  chance would give beside it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Capture", "capture", "activations", "shape_table", "ShapeRow",
           "normalize_maps", "map_grid", "show_feature_maps", "show_kernels",
           "WeightRow", "weight_stats", "show_weight_histograms",
           "class_activation_map", "grad_cam", "localization_scores"]


def _resolve(model: nn.Module, layers: Optional[Sequence[str]]) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` for the requested names (``None``: every leaf module, in
    registration order). Unknown names raise a ``ValueError`` listing a few valid ones."""
    named = dict(model.named_modules())
    if layers is None:
        return [(name, m) for name, m in model.named_modules()
                if name and not any(True for _ in m.children())]
    if isinstance(layers, str):
        raise ValueError(f"layers must be a sequence of module names, got the string {layers!r}; "
                         f"wrap it in a list: [{layers!r}]")
    missing = [name for name in layers if name not in named]
    if missing:
        some = [n for n in named if n][:12]
        raise ValueError(f"no submodule named {missing} in {type(model).__name__}; "
                         f"names look like {some} (see model.named_modules())")
    return [(name, named[name]) for name in layers]


def _tensors(value) -> List[torch.Tensor]:
    """The tensors in a hook's inputs or output (a tensor, or a tuple/list of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


class Capture(dict):
    """What :func:`capture` recorded: ``capture[name]`` is the output of layer ``name`` in
    the last forward pass (a tensor, or a tuple for modules returning several);
    ``capture.inputs[name]`` the tensors it was called with (when ``inputs=True``);
    ``capture.calls[name]`` how many times it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: Dict[str, Tuple[torch.Tensor, ...]] = {}
        self.calls: Dict[str, int] = {}


@contextmanager
def capture(model: nn.Module, layers: Optional[Sequence[str]] = None, *,
            inputs: bool = False, detach: bool = True, clone: bool = True) -> Iterator[Capture]:
    """Record the outputs of the submodules named in ``layers`` (names from
    ``model.named_modules()``; ``None``: every leaf module) during the forward passes run
    inside the ``with`` block::

        with nets.visualize.capture(model, ["layer1", "layer4"]) as seen:
            model(x)
        seen["layer4"].shape          # (N, 512, H/32, W/32)

    ``detach=True`` stores tensors cut from the autograd graph (no memory held for a
    backward pass); pass ``False`` to keep the graph (Grad-CAM needs it). ``clone=True``
    copies each tensor: a later in-place op (``nn.ReLU(inplace=True)``) would otherwise
    change what was recorded. A layer that runs several times keeps its last call.
    The hooks are removed when the block ends, also when it raises.
    """
    record = Capture()
    handles = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        if detach:
            t = t.detach()
        return t.clone() if clone else t

    def hook_for(name: str):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor):
                record[name] = keep(output)
            else:
                record[name] = tuple(keep(t) for t in _tensors(output))
            if inputs:
                record.inputs[name] = tuple(keep(t) for t in _tensors(args))
            record.calls[name] = record.calls.get(name, 0) + 1
        return hook

    try:
        for name, module in _resolve(model, layers):
            handles.append(module.register_forward_hook(hook_for(name)))
        yield record
    finally:
        for handle in handles:
            handle.remove()


def activations(model: nn.Module, x: torch.Tensor,
                layers: Optional[Sequence[str]] = None) -> Capture:
    """Run ``model(x)`` once in eval mode without gradients and return the outputs of
    ``layers`` (see :func:`capture`). The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture(model, layers, inputs=True) as seen:
            model(x)
    finally:
        model.train(was_training)
    return seen


@dataclass
class ShapeRow:
    """One line of :func:`shape_table`."""

    name: str
    kind: str
    inputs: Tuple[Tuple[int, ...], ...]
    output: Tuple[Tuple[int, ...], ...]
    params: int

    def __str__(self) -> str:
        def fmt(shapes):
            return " + ".join("×".join(map(str, s)) for s in shapes)
        return f"{self.name:<24} {self.kind:<18} {fmt(self.inputs):>28} → {fmt(self.output):<20} {self.params:>10,}"


def shape_table(model: nn.Module, x: torch.Tensor,
                layers: Optional[Sequence[str]] = None) -> List[ShapeRow]:
    """Per layer (default: every leaf module), in the order they ran: its class, the
    shapes it received and returned, and its own parameter count (with children). The
    batch dimension is included. Generated by one forward pass with hooks, so it cannot
    drift from the code the way hand-written shape comments do."""
    seen = activations(model, x, layers)
    order = sorted(seen.keys(), key=list(seen.keys()).index)   # call order = insertion order
    named = dict(model.named_modules())
    rows = []
    for name in order:
        module = named[name]
        out = seen[name]
        outs = [out] if isinstance(out, torch.Tensor) else list(out)
        rows.append(ShapeRow(name, type(module).__name__,
                             tuple(tuple(t.shape) for t in seen.inputs.get(name, ())),
                             tuple(tuple(t.shape) for t in outs),
                             sum(p.numel() for p in module.parameters())))
    return rows


# --------------------------------------------------------------------------------------
# Grids of feature maps and kernels
# --------------------------------------------------------------------------------------

_MODES = ("each", "joint", "none")


def normalize_maps(maps: torch.Tensor, mode: str = "each", symmetric: bool = False) -> torch.Tensor:
    """Scale ``maps`` (K, ...) into [0, 1] for display.

    ``mode="each"``: every map ``maps[k]`` on its own scale (its details are visible, but a
    weak map looks as strong as a strong one); ``"joint"``: one scale for all maps (their
    sizes compare; a weak map looks faint); ``"none"``: values are only clipped to [0, 1].
    ``symmetric=False`` maps [min, max] to [0, 1]; ``symmetric=True`` maps
    [-absmax, absmax] to [0, 1], so zero is mid-grey — the right choice for weights, whose
    sign matters. A constant map becomes 0 (or 0.5 when symmetric), never NaN.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if maps.dim() < 2:
        raise ValueError(f"normalize_maps takes a stack of maps (K, ...), got shape {tuple(maps.shape)}")
    x = maps.detach().float()
    if mode == "none":
        return x.clamp(0, 1)
    dims = tuple(range(1, x.dim())) if mode == "each" else tuple(range(x.dim()))
    if symmetric:
        scale = x.abs().amax(dim=dims, keepdim=True)
        return torch.where(scale > 0, x / (2 * scale.clamp_min(1e-12)) + 0.5, torch.full_like(x, 0.5))
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    span = high - low
    return torch.where(span > 0, (x - low) / span.clamp_min(1e-12), torch.zeros_like(x))


def map_grid(maps: torch.Tensor, *, ncols: int = 8, mode: str = "each", symmetric: bool = False,
             padding: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``maps`` — (K, H, W) grey maps or (K, 3, H, W) colour images — into one image
    with :func:`torchvision.utils.make_grid`, after :func:`normalize_maps`.

    Returns (H', W') for grey input and (3, H', W') for colour, with
    ``H' = rows·(H + padding) + padding`` and ``W' = cols·(W + padding) + padding``,
    ``cols = min(ncols, K)``, ``rows = ceil(K / cols)``.
    """
    from torchvision.utils import make_grid

    if maps.dim() == 3:
        grey, stack = True, maps.unsqueeze(1)
    elif maps.dim() == 4 and maps.shape[1] == 3:
        grey, stack = False, maps
    else:
        raise ValueError(f"map_grid takes (K, H, W) maps or (K, 3, H, W) images, got {tuple(maps.shape)}")
    if len(stack) == 0:
        raise ValueError("map_grid needs at least one map")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    stack = normalize_maps(stack, mode, symmetric)
    grid = make_grid(stack, nrow=min(ncols, len(stack)), padding=padding, pad_value=pad_value)
    return grid[0] if grey else grid


def _show(image: torch.Tensor, ax, title: Optional[str], cmap: str):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * image.shape[-2] / image.shape[-1]))
    if image.dim() == 3:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    else:   # vmin/vmax fixed: imshow must not rescale what normalize_maps already scaled
        ax.imshow(image.numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def show_feature_maps(fmap: torch.Tensor, *, n: int = 16, ncols: int = 8, mode: str = "each",
                      ax=None, title: Optional[str] = None, cmap: str = "gray"):
    """Draw the first ``n`` channels of one image's feature map — (C, H, W), or (1, C, H, W)
    — as a grid of grey images; ``mode`` as in :func:`normalize_maps` (say which in the
    caption). A batch of several images is an error, not silently squeezed."""
    if fmap.dim() == 4:
        if fmap.shape[0] != 1:
            raise ValueError(f"show_feature_maps draws one image's maps; got a batch of {fmap.shape[0]} "
                             "(index it: fmap[i])")
        fmap = fmap[0]
    if fmap.dim() != 3:
        raise ValueError(f"show_feature_maps takes (C, H, W) or (1, C, H, W), got {tuple(fmap.shape)}")
    return _show(map_grid(fmap[:n].cpu(), ncols=ncols, mode=mode), ax, title, cmap)


def show_kernels(weight: Union[torch.Tensor, nn.Conv2d], *, mode: str = "each", ncols: int = 8,
                 ax=None, title: Optional[str] = None, cmap: str = "gray"):
    """Draw convolution kernels (out, in, k, k): as colour images when ``in == 3`` (the
    first layer of an RGB net: each kernel shows which colour pattern it responds to), as
    grey images of the first input channel otherwise. Symmetric scaling: zero weight is
    mid-grey, positive brighter, negative darker (per colour channel for RGB kernels).
    ``mode="each"`` scales every kernel on its own, ``"joint"`` all of them together."""
    w = weight.weight if isinstance(weight, nn.Conv2d) else weight
    if w.dim() != 4:
        raise ValueError(f"show_kernels takes conv weights (out, in, k, k), got {tuple(w.shape)}")
    w = w.detach().cpu()
    maps = w if w.shape[1] == 3 else w[:, 0]
    return _show(map_grid(maps, ncols=ncols, mode=mode, symmetric=True), ax, title, cmap)


# --------------------------------------------------------------------------------------
# Weight statistics
# --------------------------------------------------------------------------------------

@dataclass
class WeightRow:
    """One line of :func:`weight_stats` (``std`` with Bessel's correction, as ``ddof=1``)."""

    name: str
    shape: Tuple[int, ...]
    numel: int
    mean: float
    std: float
    absmax: float
    sparsity: float     # fraction of entries with |w| <= eps
    norm: float         # Frobenius norm
    change: Optional[float] = None   # ||w - w_ref|| / ||w_ref|| when a reference was given (NaN if w_ref = 0)

    def __str__(self) -> str:
        change = "" if self.change is None else f" {self.change:>7.3f}" if self.change == self.change else "     n/a"
        return (f"{self.name:<26} {'×'.join(map(str, self.shape)):>12} {self.mean:>+9.4f} {self.std:>8.4f} "
                f"{self.absmax:>8.4f} {self.sparsity:>7.3f} {self.norm:>8.3f}{change}")


def weight_stats(model: nn.Module, *, reference: Optional[nn.Module] = None, eps: float = 1e-3,
                 kinds: Optional[Sequence[str]] = None) -> List[WeightRow]:
    """Per parameter tensor of ``model`` (``named_parameters``: BatchNorm's
    ``running_mean``/``running_var`` are buffers, statistics of activations, and are left
    out): mean, std, abs-max, sparsity (fraction with ``|w| <= eps``) and norm.

    ``reference``: a model of the same architecture (e.g. a copy taken before training);
    each row then also gives the relative change ``||w - w_ref|| / ||w_ref||`` (NaN where the
    reference is all zeros, as BatchNorm's biases are at initialisation).
    ``kinds``: keep only parameters whose name ends with one of these (e.g. ``["weight"]``).
    """
    ref = dict(reference.named_parameters()) if reference is not None else None
    rows = []
    for name, p in model.named_parameters():
        if kinds is not None and not any(name.endswith(k) for k in kinds):
            continue
        w = p.detach().float().cpu()
        change = None
        if ref is not None:
            if name not in ref or ref[name].shape != p.shape:
                raise ValueError(f"reference has no parameter {name!r} of shape {tuple(p.shape)}")
            r = ref[name].detach().float().cpu()
            # relative to the reference's size; NaN where the reference is all zeros (BN biases at init)
            change = float((w - r).norm() / r.norm()) if r.norm() > 0 else float("nan")
        rows.append(WeightRow(name, tuple(w.shape), w.numel(), float(w.mean()),
                              float(w.std()) if w.numel() > 1 else 0.0, float(w.abs().max()),
                              float((w.abs() <= eps).float().mean()), float(w.norm()), change))
    return rows


def show_weight_histograms(model: nn.Module, names: Sequence[str], *,
                           reference: Optional[nn.Module] = None, bins: int = 40,
                           labels: Tuple[str, str] = ("trained", "initial"), ncols: int = 4):
    """One histogram per named parameter of ``model`` (names from ``named_parameters``),
    with ``reference``'s same parameter drawn behind it on the same bins. Returns the figure."""
    import matplotlib.pyplot as plt

    params = dict(model.named_parameters())
    ref = dict(reference.named_parameters()) if reference is not None else {}
    missing = [n for n in names if n not in params or (reference is not None and n not in ref)]
    if missing:
        raise ValueError(f"no parameter named {missing}; names look like {list(params)[:8]}")
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        w = params[name].detach().float().cpu().flatten().numpy()
        values = [w] + ([ref[name].detach().float().cpu().flatten().numpy()] if name in ref else [])
        edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
        if name in ref:
            ax.hist(values[1], bins=edges, color="0.6", alpha=0.7, label=labels[1])
        ax.hist(w, bins=edges, histtype="step", color="C0", linewidth=1.5, label=labels[0])
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# Class activation maps
# --------------------------------------------------------------------------------------

def _targets(logits: torch.Tensor, target) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    target = torch.as_tensor(target, device=logits.device).long().flatten()
    if target.numel() == 1:
        target = target.expand(len(logits))
    if len(target) != len(logits):
        raise ValueError(f"target has {len(target)} entries for a batch of {len(logits)}")
    if (target < 0).any() or (target >= logits.shape[1]).any():
        raise ValueError(f"target classes must lie in 0..{logits.shape[1] - 1}")
    return target


def _upsample(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def class_activation_map(model: nn.Module, x: torch.Tensor, *, features: str = "layer3",
                         fc: str = "fc", target=None, upsample: bool = True,
                         check: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """CAM (Zhou et al., *Learning Deep Features for Discriminative Localization*, CVPR
    2016, arXiv:1512.04150) for a net that ends in global average pooling and one linear
    layer: with ``A_k`` (h, w) the k-th channel of layer ``features`` and ``w_ck`` the
    linear layer's weights,

        M_c(i, j) = Σ_k w_ck A_k(i, j),      logit_c = mean_ij M_c(i, j) + b_c,

    so the map says where the class score comes from, and averages back to it exactly.
    ``target``: a class per image, one class for all, or ``None`` for the predicted class.
    Returns ``(maps, logits)``: maps (N, H, W) bilinearly upsampled to the input size (or
    (N, h, w) with ``upsample=False``), before any ReLU. Runs in eval mode.

    ``check=True`` verifies the identity above and raises ``ValueError`` when it fails:
    the net does not end in GAP + ``fc`` on the output of ``features``.
    """
    head = dict(model.named_modules()).get(fc)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{fc!r} must name the final nn.Linear of the model, got {type(head).__name__}")
    was_training = model.training
    model.eval()
    try:
        with capture(model, [features]) as seen:
            logits = model(x)
    finally:
        model.train(was_training)
    a = seen[features]
    if not isinstance(a, torch.Tensor) or a.dim() != 4 or a.shape[1] != head.in_features:
        raise ValueError(f"layer {features!r} gives {getattr(a, 'shape', type(a))}; CAM needs "
                         f"(N, {head.in_features}, h, w) feeding {fc!r}")
    c = _targets(logits, target)
    maps = torch.einsum("nk,nkhw->nhw", head.weight[c], a)              # (N, h, w)
    if check:
        bias = head.bias[c] if head.bias is not None else 0.0
        recovered = maps.mean(dim=(1, 2)) + bias
        picked = logits.gather(1, c[:, None])[:, 0]
        if not torch.allclose(recovered, picked, rtol=1e-4, atol=1e-4 * (1 + picked.abs().max().item())):
            raise ValueError(f"the CAM of {features!r} does not average to the logits: the model does not "
                             f"end in global average pooling + {fc!r} on that layer")
    return (_upsample(maps, x.shape[-2:]) if upsample else maps), logits


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, *, target=None, relu: bool = True,
             upsample: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391) of layer ``layer``: with
    ``A_k`` its k-th channel (h, w) and ``y_c`` the class score (the logit),

        α_k = (1 / hw) Σ_ij ∂y_c / ∂A_k(i, j),       L_c = ReLU(Σ_k α_k A_k).

    Works for any layer of any differentiable net. A forward hook on ``layer`` keeps its
    output (still in the autograd graph) and hands the rest of the net a copy, so an
    in-place op after the layer cannot change the values we differentiate against; the
    hook is removed afterwards, also on error. For a GAP + linear net and the layer that
    feeds the pooling, ``α_k = w_ck / hw`` and Grad-CAM is ``ReLU(CAM) / hw``.

    Runs in eval mode (BatchNorm uses running statistics, so each image's map depends on
    that image only). Returns ``(maps, logits)``; maps (N, H, W) upsampled to the input
    (``upsample=False``: (N, h, w)); ``relu=False`` keeps the negative evidence too.
    """
    (_, module), = _resolve(model, [layer])       # unknown names: a ValueError listing valid ones
    kept: Dict[str, torch.Tensor] = {}

    def hook(mod, args, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"grad_cam needs layer {layer!r} to return one tensor, got {type(output).__name__}")
        kept["a"] = output
        return output.clone()

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
            if "a" not in kept:
                raise ValueError(f"layer {layer!r} did not run in the forward pass")
            a = kept["a"]
            if a.dim() != 4:
                raise ValueError(f"grad_cam needs a (N, C, h, w) feature map at {layer!r}, got {tuple(a.shape)}")
            c = _targets(logits, target)
            score = logits.gather(1, c[:, None]).sum()     # eval mode: images are independent
            (grad,) = torch.autograd.grad(score, a)
    finally:
        handle.remove()
        model.train(was_training)
    alpha = grad.mean(dim=(2, 3), keepdim=True)                      # (N, C, 1, 1)
    maps = (alpha * a.detach()).sum(1)                               # (N, h, w)
    if relu:
        maps = maps.clamp_min(0)
    return (_upsample(maps, x.shape[-2:]) if upsample else maps), logits.detach()


# --------------------------------------------------------------------------------------
# Scoring a map against an object mask
# --------------------------------------------------------------------------------------

def localization_scores(maps: torch.Tensor, masks: torch.Tensor) -> Dict[str, torch.Tensor]:
    """How well saliency ``maps`` (N, H, W) fall on the objects of ``masks`` (N, H, W,
    nonzero = object), per image, each with what an uninformative map would score:

    * ``energy``: fraction of the map's positive mass inside the mask (negative values are
      clipped to 0; a map with no positive mass scores the chance value). Chance: ``area``.
    * ``area``: the mask's fraction of the image — what a constant or random map's
      ``energy`` and ``pointing`` are, in expectation.
    * ``pointing``: 1 if the map's largest value lies on the object (the pointing game of
      Zhang et al., arXiv:1608.00507; ties broken at random with a fixed seed). Chance: ``area``.
    * ``auc``: the probability that a random object pixel has a larger map value than a
      random background pixel (ROC AUC, ties count 1/2; invariant to any increasing
      transform of the map). Chance: 0.5. NaN when the mask is empty or full.

    Returns a dict of (N,) float tensors. Maps and masks must have the same shape.
    """
    from scipy.stats import rankdata

    if maps.shape != masks.shape or maps.dim() != 3:
        raise ValueError(f"maps and masks must both be (N, H, W); got {tuple(maps.shape)} and {tuple(masks.shape)}")
    m = maps.detach().float().cpu().flatten(1)
    obj = (masks.detach().cpu() != 0).flatten(1)
    area = obj.float().mean(1)
    positive = m.clamp_min(0)
    mass = positive.sum(1)
    energy = torch.where(mass > 0, (positive * obj).sum(1) / mass.clamp_min(1e-12), area)
    gen = torch.Generator().manual_seed(0)
    jitter = torch.rand(m.shape, generator=gen)          # breaks ties only: argmax over the top value
    top = m == m.amax(1, keepdim=True)
    pointing = obj.gather(1, torch.where(top, jitter, torch.full_like(jitter, -1.0)).argmax(1, keepdim=True))[:, 0]
    ranks = torch.from_numpy(rankdata(m.numpy(), axis=1)).float()       # average ranks for ties
    n_obj, n_bg = obj.sum(1).float(), (~obj).sum(1).float()
    u = (ranks * obj).sum(1) - n_obj * (n_obj + 1) / 2                 # Mann-Whitney U
    auc = torch.where((n_obj > 0) & (n_bg > 0), u / (n_obj * n_bg).clamp_min(1), torch.full_like(u, float("nan")))
    return {"energy": energy, "area": area, "pointing": pointing.float(), "auc": auc}
