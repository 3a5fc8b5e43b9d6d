"""Checks shared by the tests that hold a `nets` model against its torchvision twin."""

from __future__ import annotations

import copy

import torch
from torch import nn


def on_meta(builder, **kwargs) -> nn.Module:
    """Build without allocating or initialising: shapes, counts and MACs need no numbers."""
    with torch.device("meta"):
        return builder(**kwargs)


def assert_same_state_dict_layout(ours: nn.Module, theirs: nn.Module) -> None:
    """Same keys in the same order, same shapes."""
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def assert_same_outputs(ours: nn.Module, theirs: nn.Module, sizes, train: bool = True) -> None:
    """Identical outputs in eval mode (batch 1 and 2) and, on fresh copies, in train mode
    (batch statistics, the same dropout mask), plus identical running statistics after."""
    ours.eval(), theirs.eval()
    with torch.no_grad():
        for h, w in sizes:
            for batch in (1, 2):
                x = torch.randn(batch, 3, h, w)
                torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    if not train:
        return
    ours_t, theirs_t = copy.deepcopy(ours).train(), copy.deepcopy(theirs).train()
    with torch.no_grad():
        for h, w in sizes:
            x = torch.randn(2, 3, h, w)
            torch.manual_seed(1)  # same dropout mask for both
            y_theirs = theirs_t(x)
            torch.manual_seed(1)
            y_ours = ours_t(x)
            torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=0)
    for (k, a), b in zip(ours_t.state_dict().items(), theirs_t.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
