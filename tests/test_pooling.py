"""Global pooling by name against hand-computed values, and the dual-pooling head on any
backbone width and feature-map size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nets import resnet
from nets.measure import count_params
from nets.pooling import POOL_MODES, DualPoolHead, GlobalPool2d, feature_multiplier


def _ramp() -> torch.Tensor:
    """(2, 3, 2, 3): channel k = 3n + c holds 6k, 6k+1, ..., 6k+5."""
    return torch.arange(2 * 3 * 6, dtype=torch.float32).reshape(2, 3, 2, 3)


def test_modes_against_hand_computed_values():
    x = _ramp()
    k = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    avg, mx = 6 * k + 2.5, 6 * k + 5          # mean and max of 6k .. 6k+5, exact in float
    expected = {
        "avg": avg,
        "max": mx,
        "avgmax": 6 * k + 3.75,
        "catavgmax": torch.cat([avg, mx], dim=1),
    }
    for mode, want in expected.items():
        pool = GlobalPool2d(mode)
        got = pool(x)
        assert torch.equal(got, want), mode
        assert got.shape[1] == pool.out_channels(3) == 3 * feature_multiplier(mode)
        unflat = GlobalPool2d(mode, flatten=False)(x)
        assert torch.equal(unflat, want[:, :, None, None]), mode


def test_negative_values_and_a_single_pixel():
    x = torch.tensor([[[[-3.0, -1.0]], [[2.0, -8.0]]]])            # (1, 2, 1, 2)
    assert torch.equal(GlobalPool2d("avg")(x), torch.tensor([[-2.0, -3.0]]))
    assert torch.equal(GlobalPool2d("max")(x), torch.tensor([[-1.0, 2.0]]))
    one = torch.randn(3, 5, 1, 1)
    for mode in ("avg", "max", "avgmax"):
        assert torch.equal(GlobalPool2d(mode)(one), one.flatten(1)), mode
    assert torch.equal(GlobalPool2d("catavgmax")(one), torch.cat([one, one], 1).flatten(1))


@pytest.mark.parametrize("size", [(7, 7), (4, 5), (1, 9), (13, 2)])
def test_avg_matches_adaptive_pooling_on_odd_sizes(size):
    torch.manual_seed(0)
    x = torch.randn(2, 6, *size)
    torch.testing.assert_close(GlobalPool2d("avg")(x), nn.AdaptiveAvgPool2d(1)(x).flatten(1))
    assert torch.equal(GlobalPool2d("max")(x), nn.AdaptiveMaxPool2d(1)(x).flatten(1))


def test_unknown_mode_lists_the_allowed_ones():
    for bad in ("mean", "avg_max", ""):
        with pytest.raises(ValueError) as err:
            GlobalPool2d(bad)
        assert all(mode in str(err.value) for mode in POOL_MODES)
        with pytest.raises(ValueError):
            feature_multiplier(bad)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        GlobalPool2d("avg")(torch.randn(3, 4, 4))


def _head_by_hand(head: DualPoolHead, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    z = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)          # (N, 2C)
    h = z @ head.reduce.weight[:, :, 0, 0].T + head.reduce.bias              # (N, hidden)
    if relu:
        h = torch.relu(h)
    return h @ head.fc.weight.T + head.fc.bias                               # (N, classes)


@pytest.mark.parametrize("channels", [512, 2048])
@pytest.mark.parametrize("size", [(7, 7), (4, 5), (1, 1), (3, 9)])
def test_dual_pool_head_on_any_width_and_size(channels, size):
    torch.manual_seed(0)
    head = DualPoolHead(channels, num_classes=10).eval()
    assert head.reduce.in_channels == 2 * channels and head.reduce.out_channels == channels
    x = torch.randn(2, channels, *size)
    with torch.no_grad():
        out = head(x)
        assert out.shape == (2, 10)
        torch.testing.assert_close(out, _head_by_hand(head, x))


def test_dual_pool_head_parameters_and_hidden_width():
    head = DualPoolHead(512, num_classes=10)
    assert count_params(head) == (1024 * 512 + 512) + (512 * 10 + 10)
    small = DualPoolHead(2048, num_classes=5, hidden=256)
    assert count_params(small) == (4096 * 256 + 256) + (256 * 5 + 5)


def test_without_activation_the_head_is_one_linear_map():
    """The notes' head has no nonlinearity between the 1×1 reduction and the fc: in eval
    mode it equals a single Linear(2C, classes) with W = W_fc W_reduce."""
    torch.manual_seed(0)
    head = DualPoolHead(64, num_classes=7).eval()
    assert isinstance(head.act, nn.Identity)
    w = head.fc.weight @ head.reduce.weight[:, :, 0, 0]                       # (7, 128)
    b = head.fc.weight @ head.reduce.bias + head.fc.bias
    x = torch.randn(3, 64, 5, 6)
    with torch.no_grad():
        z = GlobalPool2d("catavgmax")(x)
        torch.testing.assert_close(head(x), z @ w.T + b)


def test_relu_makes_it_an_mlp():
    torch.manual_seed(0)
    head = DualPoolHead(64, num_classes=7, act_layer=nn.ReLU).eval()
    x = torch.randn(3, 64, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(head(x), _head_by_hand(head, x, relu=True))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    head = DualPoolHead(32, num_classes=4, dropout=0.5)
    x = torch.randn(2, 32, 3, 3)
    with torch.no_grad():
        head.train()
        a, b = head(x), head(x)
        assert not torch.equal(a, b)
        head.eval()
        assert torch.equal(head(x), head(x))
    no_drop = DualPoolHead(32, num_classes=4, dropout=0.0).train()
    with torch.no_grad():
        assert torch.equal(no_drop(x), no_drop.eval()(x))


def test_bad_head_arguments_and_inputs():
    head = DualPoolHead(512, num_classes=10)
    with pytest.raises(ValueError, match="512 input channels, got 2048"):
        head(torch.randn(1, 2048, 7, 7))
    with pytest.raises(ValueError, match="3-d"):
        head(torch.randn(512, 7, 7))
    with pytest.raises(ValueError, match="dropout"):
        DualPoolHead(512, 10, dropout=1.5)
    with pytest.raises(ValueError, match="hidden"):
        DualPoolHead(512, 10, hidden=0)
    with pytest.raises(ValueError, match="in_channels"):
        DualPoolHead(0, 10)


@pytest.mark.parametrize("builder, size, channels, grid", [
    (resnet.resnet18, (97, 131), 512, (4, 5)),
    (resnet.resnet50, (64, 80), 2048, (2, 3)),
])
def test_dual_pool_head_on_resnet_features(builder, size, channels, grid):
    """The head takes its width from the backbone (``num_features``), not a hard-coded 512."""
    torch.manual_seed(0)
    backbone = builder().eval()
    head = DualPoolHead(backbone.num_features, num_classes=3).eval()
    with torch.no_grad():
        feats = backbone.forward_features(torch.randn(1, 3, *size))
        assert feats.shape == (1, channels, *grid)
        assert head(feats).shape == (1, 3)
