"""Plots the chapters share: learning curves, image grids (with labels and masks), heatmaps.

Each helper draws into a given ``ax`` (or makes a figure) and returns what it drew on; the
notebook calls ``plt.show()``.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch

from .train import History


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over ``window`` values (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
    return out


def plot_history(
    histories: Union[History, Mapping[str, History]],
    key: str = "train_loss",
    ax: Optional[plt.Axes] = None,
    window: int = 1,
    error: bool = False,
    **line_kwargs,
) -> plt.Axes:
    """Learning curves of one or several runs.

    ``key`` is an epoch key (``train_loss``, ``val_metric``, ...) or a step key
    (``loss``, ``metric``); step curves are usually smoothed with ``window``.
    ``error=True`` plots ``1 - metric`` (e.g. training error as in the ResNet paper).
    """
    if isinstance(histories, History):
        histories = {"": histories}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    per_step = False
    for label, history in histories.items():
        values = np.asarray(history[key], dtype=float)
        if error:
            values = 1.0 - values
        per_step = bool(history.steps) and key in history.steps[0]
        x = np.arange(1, len(values) + 1)
        ax.plot(x, smooth(values, window), label=label or None, **line_kwargs)
    ax.set_xlabel("step" if per_step else "epoch")
    ax.set_ylabel(("1 − " if error else "") + key.replace("_", " "))
    if any(histories.keys()):
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    array = image.detach().cpu().float()
    if array.dim() == 3 and array.shape[0] in (1, 3):
        array = array.permute(1, 2, 0)
    array = array.numpy()
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def show_images(
    images: torch.Tensor,
    labels: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    masks: Optional[torch.Tensor] = None,
    ncols: int = 8,
    size: float = 1.3,
    title: Optional[str] = None,
) -> plt.Figure:
    """A grid of images (N, C, H, W) or (N, H, W), titled by label, each followed by its
    mask (N, H, W) in the row below when ``masks`` is given."""
    n = len(images)
    if n == 0:
        raise ValueError("show_images needs at least one image")
    ncols = min(ncols, n)
    nrows = -(-n // ncols) * (2 if masks is not None else 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if title else 0)),
                             squeeze=False)
    mask_max = int(masks.max()) if masks is not None else 0
    for i in range(nrows * ncols):
        axes.flat[i].axis("off")
    for i in range(n):
        row, col = divmod(i, ncols)
        row *= 2 if masks is not None else 1
        image = _to_hwc(images[i])
        axes[row, col].imshow(image, cmap="gray" if image.ndim == 2 else None)
        if labels is not None:
            label = int(labels[i])
            axes[row, col].set_title(class_names[label] if class_names else str(label), fontsize=8)
        if masks is not None:
            axes[row + 1, col].imshow(masks[i].cpu().numpy(), cmap="tab20" if mask_max > 1 else "gray",
                                      vmin=0, vmax=max(mask_max, 1), interpolation="nearest")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap(
    values: Union[np.ndarray, torch.Tensor],
    row_labels: Optional[Sequence[str]] = None,
    col_labels: Optional[Sequence[str]] = None,
    ax: Optional[plt.Axes] = None,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    colorbar: bool = True,
) -> plt.Axes:
    """A matrix as coloured cells with their values written in (e.g. a confusion matrix
    or attention weights)."""
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"heatmap takes a 2-d matrix, got shape {values.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * values.shape[1] + 2, 0.5 * values.shape[0] + 1))
    image = ax.imshow(values, cmap=cmap)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(values.shape[1]), labels=col_labels if col_labels is not None else None)
    ax.set_yticks(range(values.shape[0]), labels=row_labels if row_labels is not None else None)
    if col_labels is not None:
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    if fmt and values.size <= 400:
        threshold = (np.nanmax(values) + np.nanmin(values)) / 2
        for (r, c), v in np.ndenumerate(values):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="black" if v > threshold else "white")
    return ax


def strip_plot(
    groups: Mapping[str, Sequence[float]],
    ax: Optional[plt.Axes] = None,
    ylabel: Optional[str] = None,
    jitter: float = 0.08,
    chance: Optional[float] = None,
) -> plt.Axes:
    """One column of dots per group (e.g. the final error of each seed of a run) with a
    short bar at the group's mean: the spread a single number would hide.

    The horizontal offsets are a fixed, evenly spaced spread within ``±jitter``, so the
    figure is the same every time. ``chance`` draws a dotted line (e.g. 0.9 for 10 classes).
    """
    if not groups:
        raise ValueError("strip_plot needs at least one group")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(groups) + 2, 3.2))
    for i, (label, values) in enumerate(groups.items()):
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            raise ValueError(f"group {label!r} has no values")
        offsets = np.linspace(-jitter, jitter, values.size) if values.size > 1 else np.zeros(1)
        points = ax.plot(i + offsets, values, "o", alpha=0.8, markersize=5)[0]
        ax.hlines(values.mean(), i - 2.5 * jitter, i + 2.5 * jitter, color=points.get_color(), linewidth=2)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(groups)), labels=list(groups.keys()))
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    return ax
