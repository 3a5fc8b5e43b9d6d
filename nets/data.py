"""Data for the chapters, all of it available offline.

* :class:`Shapes` — the book's own image set, drawn procedurally from a seed: ten shape
  classes (disk, ring, square, ...) at random position, size, aspect and tilt, solid or
  striped, on a colour gradient with clutter and pixel noise. Every image comes with its
  class label *and* a per-pixel mask, so the same data serves classification and
  segmentation. 10,000 images of 32×32 take about 0.8 s to draw on a 2-core CPU
  (`benchmarks/bench_data.py`).
* :func:`digits` — scikit-learn's 1,797 real handwritten 8×8 digits (they ship in its wheel).
* :func:`cifar10` — the real CIFAR-10 through torchvision, for readers who are online.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

SPLITS = ("train", "val", "test")

CLASS_NAMES = ("disk", "ring", "square", "frame", "triangle",
               "plus", "cross", "diamond", "bar", "half-disk")

# Each shape is a predicate on the object's own coordinates (u, v): roughly the unit
# disk, v pointing down the image. Tilts stay within ±15°, so a plus never turns into a
# cross, nor a square into a diamond.
_SHAPES: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "disk": lambda u, v: u**2 + v**2 <= 1.0,
    "ring": lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.45**2),
    "square": lambda u, v: torch.maximum(u.abs(), v.abs()) <= 0.85,
    "frame": lambda u, v: (torch.maximum(u.abs(), v.abs()) <= 0.9)
                          & (torch.maximum(u.abs(), v.abs()) >= 0.5),
    "triangle": lambda u, v: (v <= 0.7) & (u.abs() <= 0.6 * (v + 0.95)),
    "plus": lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95)),
    "cross": lambda u, v: _plus_at_45(u, v),
    "diamond": lambda u, v: u.abs() + v.abs() <= 1.05,
    "bar": lambda u, v: (u.abs() <= 1.0) & (v.abs() <= 0.32),
    "half-disk": lambda u, v: (u**2 + (v + 0.4) ** 2 <= 1.0) & (v >= -0.4),
}


def _plus_at_45(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    p, q = (u + v) / math.sqrt(2), (u - v) / math.sqrt(2)
    return ((p.abs() <= 0.3) & (q.abs() <= 1.0)) | ((q.abs() <= 0.3) & (p.abs() <= 1.0))


def _chunk_size(image_size: int) -> int:
    """Images drawn per batch of random numbers (about 2M pixels). Every chunk is drawn in
    full and then cut, so the first k images never depend on how many were asked for."""
    return max(16, 2**21 // image_size**2)


def make_shapes(
    n: int,
    image_size: int = 32,
    seed: int = 0,
    split: str = "train",
    noise: float = 0.08,
    clutter: int = 3,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` images of the Shapes set.

    Returns ``images`` (N, 3, S, S) float32 in [0, 1], ``labels`` (N,) int64 in 0..9 and
    ``masks`` (N, S, S) int64 with 0 for background and ``label + 1`` on the object.
    The same ``(seed, split)`` always gives the same tensors; different splits of one
    seed are independent draws.
    """
    _check_shapes_args(n, image_size, split, noise, clutter)
    gen = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
    chunk = _chunk_size(image_size)
    parts = [tuple(t[: n - start] for t in _draw(chunk, image_size, noise, clutter, gen))
             for start in range(0, n, chunk)]
    if not parts:
        return (torch.zeros(0, 3, image_size, image_size), torch.zeros(0, dtype=torch.long),
                torch.zeros(0, image_size, image_size, dtype=torch.long))
    images, labels, masks = (torch.cat(t) for t in zip(*parts))
    return images, labels, masks


def _check_shapes_args(n: int, image_size: int, split: str, noise: float, clutter: int) -> None:
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int (number of images), got {n!r}")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int of at least 8 pixels, got {image_size!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 <= noise <= 1:
        raise ValueError(f"noise is a pixel standard deviation in [0, 1], got {noise!r}")
    if not isinstance(clutter, int) or clutter < 0:
        raise ValueError(f"clutter must be a non-negative int (distractors per image), got {clutter!r}")


def _uniform(gen: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=gen) * (high - low) + low


def _draw(n: int, size: int, noise: float, clutter: int, gen: torch.Generator):
    # pixel centres in [-1, 1]; y grows downwards as in an image
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")            # (S, S)
    x, y = x.expand(n, 1, size, size), y.expand(n, 1, size, size)

    # background: a linear colour gradient in a random direction
    c0, c1 = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
    phi = _uniform(gen, (n, 1, 1, 1), 0, 2 * math.pi)
    t = ((x * phi.cos() + y * phi.sin()) + 1.5) / 3               # (N, 1, S, S) in [0, 1]
    images = c0 + (c1 - c0) * 0.6 * t
    background = images.mean(dim=(2, 3), keepdim=True)           # (N, 3, 1, 1)

    # clutter: small blobs and thin strokes in random colours, drawn under the object
    for _ in range(clutter):
        cx, cy = _uniform(gen, (n, 1, 1, 1), -1, 1), _uniform(gen, (n, 1, 1, 1), -1, 1)
        r = _uniform(gen, (n, 1, 1, 1), 0.06, 0.16)
        blob = (x - cx) ** 2 + (y - cy) ** 2 <= r**2
        angle = _uniform(gen, (n, 1, 1, 1), 0, math.pi)
        dist = ((x - cx) * angle.sin() - (y - cy) * angle.cos()).abs()
        along = ((x - cx) * angle.cos() + (y - cy) * angle.sin()).abs()
        stroke = (dist <= 1.2 / size) & (along <= 0.5)
        is_blob = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
        region = torch.where(is_blob, blob, stroke)
        colour = torch.rand(n, 3, 1, 1, generator=gen)
        images = torch.where(region, colour, images)

    # the object: class, pose, colour far from the background, optional stripes
    labels = torch.randint(0, len(CLASS_NAMES), (n,), generator=gen)
    cx, cy = _uniform(gen, (n, 1, 1, 1), -0.45, 0.45), _uniform(gen, (n, 1, 1, 1), -0.45, 0.45)
    radius = _uniform(gen, (n, 1, 1, 1), 0.32, 0.6)
    aspect = torch.exp(_uniform(gen, (n, 1, 1, 1), -0.2, 0.2))
    tilt = _uniform(gen, (n, 1, 1, 1), -math.pi / 12, math.pi / 12)
    dx, dy = x - cx, y - cy
    u = (dx * tilt.cos() + dy * tilt.sin()) / (radius * aspect)
    v = (-dx * tilt.sin() + dy * tilt.cos()) / (radius / aspect)
    inside = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for k, name in enumerate(CLASS_NAMES):
        idx = (labels == k).nonzero(as_tuple=True)[0]
        if len(idx):
            inside[idx] = _SHAPES[name](u[idx], v[idx])
    colour = (background + _uniform(gen, (n, 3, 1, 1), 0.3, 0.7)) % 1.0
    stripe_angle = _uniform(gen, (n, 1, 1, 1), 0, math.pi)
    stripes = torch.sin((x * stripe_angle.cos() + y * stripe_angle.sin()) * size * 0.9) > 0
    striped = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    fill = torch.where(striped & stripes, colour * 0.55, colour)
    images = torch.where(inside, fill, images)

    images = (images + noise * torch.randn(images.shape, generator=gen)).clamp_(0, 1)
    masks = inside[:, 0].long() * (labels.view(n, 1, 1) + 1)
    return images.contiguous(), labels, masks


class Shapes(Dataset):
    """The Shapes set as a ``Dataset``.

    ``target`` picks what an item pairs with its image: ``"label"`` (classification),
    ``"mask"`` (segmentation, 0 = background, ``k + 1`` = class ``k``) or ``"both"``.
    The tensors are also available whole as ``.images``, ``.labels`` and ``.masks``.

    >>> train = Shapes(5000, image_size=16, split="train", seed=0)
    >>> image, label = train[0]            # (3, 16, 16), ()
    """

    classes = CLASS_NAMES

    def __init__(self, n: int, image_size: int = 32, split: str = "train", seed: int = 0,
                 target: str = "label", noise: float = 0.08, clutter: int = 3) -> None:
        if target not in ("label", "mask", "both"):
            raise ValueError(f"target must be 'label', 'mask' or 'both', got {target!r}")
        self.images, self.labels, self.masks = make_shapes(
            n, image_size=image_size, seed=seed, split=split, noise=noise, clutter=clutter)
        self.target = target
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.target == "label":
            return self.images[i], self.labels[i]
        if self.target == "mask":
            return self.images[i], self.masks[i]
        return self.images[i], self.labels[i], self.masks[i]


def digits(split: str = "train", image_size: int = 8, seed: int = 0,
           test_fraction: float = 0.25) -> TensorDataset:
    """scikit-learn's handwritten digits (1,797 real 8×8 grey images, classes 0–9).

    ``split`` is ``"train"`` or ``"test"``, a fixed random split of ``test_fraction``
    drawn from ``seed``. Images are (1, S, S) floats in [0, 1], bilinearly resized when
    ``image_size`` is not 8.
    """
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(labels) * test_fraction)
    idx = order[:n_test] if split == "test" else order[n_test:]
    return TensorDataset(images[idx], labels[idx])


def cifar10(root: str = "data", train: bool = True, download: bool = True,
            transform: Optional[Callable] = None) -> Dataset:
    """The real CIFAR-10 (50,000 + 10,000 colour 32×32 images) via torchvision.

    Needs the network the first time (about 170 MB into ``root``). Offline this raises a
    ``RuntimeError`` that points to the offline sets, :class:`Shapes` and :func:`digits`.
    Without a ``transform`` images come as (3, 32, 32) float tensors in [0, 1].
    """
    from torchvision import datasets, transforms

    if transform is None:
        transform = transforms.ToTensor()
    try:
        return datasets.CIFAR10(root=root, train=train, download=download, transform=transform)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a missing set is a RuntimeError
        raise RuntimeError(
            f"CIFAR-10 is not available in {root!r} and could not be downloaded ({exc}). "
            "Offline, use the book's procedural set nets.data.Shapes(n, image_size=32) "
            "or the real digits that ship with scikit-learn, nets.data.digits()."
        ) from exc
