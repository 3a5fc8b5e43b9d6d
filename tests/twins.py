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
    for (k, a), b in zip(ours_t.state_dict().items(), theirs_t.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def assert_open_attention_equals_plain(pair, train: bool, size, num_classes: int) -> None:
    """An attention ResNet whose gates are forced open (every gate exactly 1.0) computes its
    plain twin's function: same outputs, and in train mode the same running statistics.
    ``pair = (plain, attention_model)`` sharing the plain net's weights; fresh copies are used."""
    plain, model = (copy.deepcopy(m) for m in pair)
    plain.train(train)
    model.train(train)
    torch.manual_seed(1)
    x = torch.randn(2 if train else 1, 3, *size)
    with torch.no_grad():
        expected = plain(x)
        out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    if train:   # the same batch statistics went into the running averages
        ours = model.state_dict()
        for k, v in plain.state_dict().items():
            assert torch.equal(ours[k], v), k


def assert_pretrained_weights_load_offline(offline_hub, ours_builder, theirs_builder, weights,
                                           entry) -> None:
    """torchvision's checkpoint ``entry``, put in torch.hub's cache (``offline_hub``), loads into
    ``ours_builder(weights=weights)`` with no network, and both models then give identical
    outputs."""
    torch.manual_seed(0)
    theirs = theirs_builder().eval()
    offline_hub(entry, theirs.state_dict())
    ours = ours_builder(weights=weights, progress=False).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def assert_same_with_other_num_classes(ours_builder, theirs_builder, num_classes: int = 10) -> None:
    """Built for ``num_classes`` classes, ours loads theirs strictly and gives identical
    ``(N, num_classes)`` outputs on a non-square input."""
    torch.manual_seed(0)
    theirs, ours = theirs_builder(num_classes=num_classes), ours_builder(num_classes=num_classes)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, 200, 168)
    with torch.no_grad():
        y = ours(x)
        assert y.shape == (2, num_classes)
        torch.testing.assert_close(y, theirs(x), rtol=0, atol=0)
