"""Chapter 6's additions to nets.pooling: a plain head with any global pooling, and a backbone's
features under another head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nets
from nets.measure import count_params
from nets.pooling import POOL_MODES, DualPoolHead, GlobalPool2d, HeadedNet, pool_linear_head


@pytest.mark.parametrize("mode", POOL_MODES)
def test_pool_linear_head_is_pool_then_linear(mode):
    torch.manual_seed(0)
    head = pool_linear_head(64, 10, mode)
    k = 2 if mode == "catavgmax" else 1
    assert count_params(head) == k * 64 * 10 + 10
    x = torch.randn(3, 64, 5, 7)
    torch.testing.assert_close(head(x), head[1](GlobalPool2d(mode)(x)))
    assert head(x).shape == (3, 10)


def test_pool_linear_head_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown pooling mode"):
        pool_linear_head(64, 10, "mean")
    with pytest.raises(ValueError, match="in_channels >= 1"):
        pool_linear_head(0, 10)


def test_headed_net_with_the_avg_head_equals_the_original_net():
    torch.manual_seed(0)
    original = nets.cifar_resnet(8, width=8).eval()
    head = pool_linear_head(32, 10, "avg")
    head[1].load_state_dict(original.fc.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = original(x)
        swapped = HeadedNet(original, head).eval()     # takes over the backbone (fc removed)
        torch.testing.assert_close(swapped(x), want)
    assert isinstance(swapped.backbone.fc, nn.Identity) and isinstance(swapped.backbone.avgpool, nn.Identity)


@pytest.mark.parametrize("width", [8, 16])
def test_headed_net_counts_only_what_runs(width):
    backbone = nets.cifar_resnet(8, width=width)
    features_only = count_params(backbone) - count_params(backbone.fc)
    head = DualPoolHead(4 * width, 10)
    net = HeadedNet(backbone, head)
    assert count_params(net) == features_only + count_params(head)
    assert net(torch.rand(2, 3, 20, 24)).shape == (2, 10)


def test_headed_net_needs_forward_features():
    with pytest.raises(ValueError, match="forward_features"):
        HeadedNet(nn.Conv2d(3, 8, 3), DualPoolHead(8, 10))
