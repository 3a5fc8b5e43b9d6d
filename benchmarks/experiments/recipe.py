"""The training recipe of the sweep scripts of chapters 3 to 6 — now in the package.

It lives in :mod:`nets.recipes` (``one_cycle_run``: SGD with momentum 0.9 and weight decay
5e-4, PyTorch's ``OneCycleLR`` with its defaults, shuffled batches drawn with ``generator``,
trained with :func:`nets.fit`), where chapter 1 and ``python -m nets.run`` use it too. The
scripts ran it on the CPU; this keeps that default for them.
"""

from __future__ import annotations

import torch

from nets.recipes import one_cycle_run as _one_cycle_run


def one_cycle_run(*args, **kwargs):
    """:func:`nets.recipes.one_cycle_run` on the CPU unless ``device`` says otherwise."""
    kwargs.setdefault("device", torch.device("cpu"))
    return _one_cycle_run(*args, **kwargs)
