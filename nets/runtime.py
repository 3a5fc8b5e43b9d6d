"""Where and how big a chapter runs: device choice, seeding and the one scale knob.

Every chapter starts with the same three lines::

    dev = nets.device()          # CUDA, then Apple MPS, then CPU (NETS_DEVICE overrides)
    nets.seed_everything(0)      # Python, NumPy and torch generators
    steps = nets.scaled(600)     # 600 at NETS_SCALE=1, 60,000 at NETS_SCALE=100

The defaults are sized for a 2-core laptop CPU; a GPU reader sets ``NETS_SCALE`` to run
the same notebook at paper size without editing a cell.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch

DEVICE_ENV = "NETS_DEVICE"
SCALE_ENV = "NETS_SCALE"


def device() -> torch.device:
    """The device chapters compute on: ``$NETS_DEVICE`` if set, else CUDA, MPS, CPU.

    ``NETS_DEVICE`` takes anything ``torch.device`` understands (``cpu``, ``cuda``,
    ``cuda:1``, ``mps``); asking for a device this machine does not have is an error,
    not a silent fall-back.
    """
    wanted = os.environ.get(DEVICE_ENV, "").strip()
    if wanted:
        try:
            dev = torch.device(wanted)
        except RuntimeError as exc:
            raise ValueError(f"{DEVICE_ENV}={wanted!r} is not a torch device "
                             "(expected e.g. 'cpu', 'cuda', 'cuda:0', 'mps')") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={wanted!r} but CUDA is not available here")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"{DEVICE_ENV}={wanted!r} but Apple MPS is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators (all devices).

    Returns a fresh ``torch.Generator`` seeded the same way, handy for a
    ``DataLoader(generator=...)`` so shuffling does not depend on what ran before.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    return torch.Generator().manual_seed(seed)


def scale() -> float:
    """The scale factor from ``$NETS_SCALE`` (default 1.0).

    It multiplies dataset sizes and training lengths (see :func:`scaled`). 1 is the
    CPU-sized default every chapter is timed at; 10 to 100 approaches the papers' runs.
    """
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{SCALE_ENV}={raw!r} is not a number (expected e.g. 1, 0.5, 20)") from exc
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{SCALE_ENV} must be a positive number, got {raw!r}")
    return value


def scaled(n: int, minimum: int = 1) -> int:
    """``n`` multiplied by the scale knob, rounded, and at least ``minimum``.

    Use it for every size a chapter could grow at paper scale: number of images,
    epochs, steps.
    """
    if n < 0:
        raise ValueError(f"scaled() takes a non-negative count, got {n}")
    return max(minimum, round(n * scale()))


def at_default_scale() -> bool:
    """True when the chapter runs at ``NETS_SCALE=1``, the CPU budget its text describes."""
    return scale() == 1.0


def assert_at_budget(condition: bool, claim: str) -> bool:
    """Check a claim about the *short CPU budget* (``NETS_SCALE=1``) only.

    A chapter asserts two kinds of claims. Claims about the phenomenon (a deeper plain net
    trains worse than a shallower one) must hold at any scale: use a plain ``assert``.
    Claims about what a few hundred CPU steps show (the shallow net is still the fastest,
    a linear model is still near chance) may stop holding when a GPU reader runs the same
    notebook longer; state them in the text as budget claims and check them with this
    function, which raises ``AssertionError(claim)`` if ``condition`` is false at scale 1
    and does nothing at any other scale. Returns whether the claim was checked.
    """
    if not at_default_scale():
        return False
    if not condition:
        raise AssertionError(f"claim about the NETS_SCALE=1 budget failed: {claim}")
    return True
