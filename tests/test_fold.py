"""Folding BN into the convolution before it (nets.batchnorm.fold_bn, fold_bn_eval)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import nets
from nets.batchnorm import BatchNorm2d, fold_bn, fold_bn_eval


def _trained_like(bn: nn.Module, channels: int, seed: int) -> nn.Module:
    """Give a BN layer non-trivial γ, β and running statistics, then switch it to eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g) * 2 - 0.5)      # some γ negative
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g) * 3)
        bn.running_var.copy_(torch.rand(channels, generator=g) * 4 + 0.01)
    return bn.eval()


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    for i, m in enumerate(m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, BatchNorm2d))):
        _trained_like(m, m.num_features, seed + i)
    return model.eval()


@pytest.mark.parametrize("bn_class", [nn.BatchNorm2d, BatchNorm2d])
@pytest.mark.parametrize("conv_kwargs", [
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, bias=True),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=8, bias=False),
    dict(in_channels=6, out_channels=4, kernel_size=1, groups=2, bias=True, padding_mode="zeros"),
])
def test_fold_bn_equals_torch_fusion_and_the_pair(bn_class, conv_kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(**conv_kwargs).eval()
    bn = _trained_like(bn_class(conv.out_channels), conv.out_channels, seed=1)
    ours, theirs = fold_bn(conv, bn), fuse_conv_bn_eval(conv, bn)
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.bias, theirs.bias, rtol=1e-6, atol=1e-6)
    x = torch.randn(5, conv.in_channels, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), bn(conv(x)), rtol=1e-4, atol=1e-4)
    assert not ours.training and ours.bias is not None
    for name in ("kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(ours, name) == getattr(conv, name)


def test_fold_bn_refuses_train_mode_missing_statistics_and_channel_mismatch():
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    with pytest.raises(ValueError, match="eval mode"):
        fold_bn(conv.eval(), bn.train())
    with pytest.raises(ValueError, match="running statistics"):
        fold_bn(conv.eval(), nn.BatchNorm2d(4, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="output channels"):
        fold_bn(conv.eval(), nn.BatchNorm2d(5).eval())


@pytest.mark.parametrize("norm_layer", [None, BatchNorm2d])
def test_fold_bn_eval_keeps_a_resnet_s_outputs_and_removes_every_bn(norm_layer):
    torch.manual_seed(0)
    model = nets.cifar_resnet(20, width=8, norm_layer=norm_layer)
    model = _randomise_norms(model)
    x = torch.randn(4, 3, 16, 16)
    folded = fold_bn_eval(model, example=x)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, (nn.BatchNorm2d, BatchNorm2d)) for m in folded.modules())
    n_bn = sum(isinstance(m, (nn.BatchNorm2d, BatchNorm2d)) for m in model.modules())
    assert n_bn == 19                              # the original is untouched
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # each BN's 2C parameters go, each conv gains a C-channel bias
    assert nets.count_params(folded) == nets.count_params(model) - sum(c.out_channels for c in convs)


def test_fold_bn_eval_on_an_imagenet_resnet_with_projection_shortcuts():
    torch.manual_seed(0)
    model = _randomise_norms(nets.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    folded = fold_bn_eval(model, example=x, atol=1e-3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_fold_bn_eval_refuses_a_model_whose_pair_is_not_conv_then_bn():
    class ConvUsedTwice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y                  # the raw conv output is used too

    model = _randomise_norms(ConvUsedTwice())
    with pytest.raises(ValueError, match="changed the outputs"):
        fold_bn_eval(model, example=torch.randn(2, 3, 8, 8))
    fold_bn_eval(model)                            # without an example nothing is checked
