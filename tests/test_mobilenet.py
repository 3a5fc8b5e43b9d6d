"""MobileNet V1/V2/V3: torchvision equality, the papers' sizes and costs, width multipliers,
pretrained-weight loading (offline) and input checks."""

from __future__ import annotations


import pytest
import torch
import torchvision.models as tvm
from torch import nn

from nets import mobilenet as M
from nets.measure import count_macs, count_params
from nets.se import SqueezeExcitation
from twins import (assert_pretrained_weights_load_offline, assert_same_outputs, assert_same_state_dict_layout,
                   assert_same_with_other_num_classes)

TORCHVISION_MODELS = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]
SIZES = [(224, 224), (97, 131)]  # square, and non-square with sides not multiples of 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_matches_torchvision(name):
    torch.manual_seed(0)
    theirs = getattr(tvm, name)()
    ours = getattr(M, name)()
    assert_same_state_dict_layout(ours, theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_outputs(ours, theirs, SIZES)


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_matches_torchvision_with_other_num_classes(name):
    assert_same_with_other_num_classes(getattr(M, name), getattr(tvm, name))


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_width_multiplier_matches_torchvision(name):
    torch.manual_seed(0)
    for width in (0.75, 1.3):
        ours = getattr(M, name)(width_mult=width)
        theirs = getattr(tvm, name)(width_mult=width)
        assert_same_state_dict_layout(ours, theirs)


def test_v3_batchnorm_and_se_follow_torchvision():
    model = M.mobilenet_v3_large()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.eps == 0.001 and bn.momentum == 0.01 for bn in bns)
    se = [m for m in model.modules() if isinstance(m, SqueezeExcitation)]
    assert len(se) == 8  # the SE column of paper Table 1
    assert all(isinstance(m.gate, nn.Hardsigmoid) for m in se)
    # squeeze = make_divisible(exp / 4, 8): 72 -> 24 (18 rounded up), 960 -> 240
    assert [m.fc1.out_channels for m in se] == [24, 32, 32, 120, 168, 168, 240, 240]


# --------------------------------------------------------------------------- weights=

@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large"])
def test_pretrained_weights_load_offline(name, offline_hub):
    from torchvision.models import get_model_weights

    assert_pretrained_weights_load_offline(offline_hub, getattr(M, name), getattr(tvm, name),
                                           "IMAGENET1K_V1", get_model_weights(name).IMAGENET1K_V1)


def test_pretrained_weights_without_network_say_so(offline_hub):
    with pytest.raises(RuntimeError, match="network|[Oo]ffline"):
        M.mobilenet_v3_small(weights="DEFAULT", progress=False)


def test_pretrained_weights_reject_other_heads_and_widths():
    with pytest.raises(ValueError, match="1000 classes"):
        M.mobilenet_v2(num_classes=10, weights="DEFAULT")
    with pytest.raises(ValueError, match="width_mult"):
        M.mobilenet_v3_large(weights="DEFAULT", width_mult=0.75)
    with pytest.raises(ValueError, match="not for mobilenet_v2"):
        M.mobilenet_v2(weights="ResNet50_Weights.DEFAULT")


# --------------------------------------------------------------------------- sizes and costs

@pytest.mark.parametrize("builder, kwargs, params, gmacs", [
    (M.mobilenet_v1, {}, 4_231_976, 0.569),
    (M.mobilenet_v1, {"separable": False}, 29_294_088, 4.867),
    (M.mobilenet_v2, {}, 3_504_872, 0.301),
    (M.mobilenet_v3_large, {}, 5_483_032, 0.217),
    (M.mobilenet_v3_small, {}, 2_542_856, 0.057),
])
def test_params_and_macs_match_reference(builder, kwargs, params, gmacs):
    model = builder(**kwargs)
    assert count_params(model) == params
    assert round(count_macs(model, (1, 3, 224, 224)) / 1e9, 3) == gmacs  # to REFERENCE's digits


@pytest.mark.parametrize("alpha, mmacs, mparams", [
    (0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5),
])
def test_v1_width_multiplier_matches_paper_table6(alpha, mmacs, mparams):
    model = M.mobilenet_v1(width_mult=alpha)
    assert count_macs(model, (1, 3, 224, 224)) / 1e6 == pytest.approx(mmacs, rel=0.01)
    assert round(count_params(model) / 1e6, 1) == mparams


def test_v1_width_multiplier_scales_every_layer():
    model = M.mobilenet_v1(width_mult=0.5)
    assert model.features[0][0].out_channels == 16
    widths = [block.pointwise[0].out_channels for block in model.features[1:]]
    assert widths == [32, 64, 64, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    assert model.classifier.in_features == 512


@pytest.mark.parametrize("size, mmacs", [(192, 418), (160, 290), (128, 186)])
def test_v1_resolution_multiplier_is_the_input_size(size, mmacs):
    # Paper Table 7: the resolution multiplier rho is just a smaller input.
    model = M.mobilenet_v1()
    assert count_macs(model, (1, 3, size, size)) / 1e6 == pytest.approx(mmacs, rel=0.01)
    assert count_params(model) == 4_231_976  # parameters do not depend on the input size


def test_v1_structure_and_depthwise_separable_cost():
    sep, full = M.mobilenet_v1(), M.mobilenet_v1(separable=False)
    assert len(sep.features) == len(full.features) == 14  # stem + 13 rows of Table 1
    assert sum(isinstance(m, nn.Conv2d) for m in sep.modules()) == 27  # + the FC: 28 layers
    strides = [block.depthwise[0].stride[0] for block in sep.features[1:]]
    assert strides == [s for _, s in M.MOBILENET_V1_SETTING]
    assert all(block.depthwise[0].groups == block.depthwise[0].in_channels for block in sep.features[1:])
    # one pair on an M-channel D x D map costs 9·M·D² + M·N·D² (paper eq. 4)
    m_in, n_out, d = 32, 64, 14
    pair = M.DepthwiseSeparableConv(m_in, n_out)
    assert count_macs(pair, (1, m_in, d, d)) == 9 * m_in * d * d + m_in * n_out * d * d


def test_v1_trains_every_parameter():
    torch.manual_seed(0)
    model = M.mobilenet_v1(width_mult=0.25, num_classes=7).train()
    model(torch.randn(2, 3, 64, 48)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_v2_width_multiplier_keeps_last_conv_for_small_widths():
    small, big = M.mobilenet_v2(width_mult=0.5), M.mobilenet_v2(width_mult=1.4)
    assert small.features[0][0].out_channels == 16 and small.last_channel == 1280
    assert big.features[0][0].out_channels == 48 and big.last_channel == 1792


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("builder", [M.mobilenet_v1, M.mobilenet_v2, M.mobilenet_v3_small])
def test_any_input_size_works(builder):
    model = builder(num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 5)
        assert model(torch.randn(1, 3, 33, 7)).shape == (1, 5)


@pytest.mark.parametrize("builder", [M.mobilenet_v1, M.mobilenet_v2, M.mobilenet_v3_small])
def test_bad_input_raises_value_error(builder):
    model = builder().eval()
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))


@pytest.mark.parametrize("builder", [M.mobilenet_v1, M.mobilenet_v2, M.mobilenet_v3_large])
@pytest.mark.parametrize("width", [0, -0.5])
def test_bad_width_raises_value_error(builder, width):
    with pytest.raises(ValueError, match="width_mult"):
        builder(width_mult=width)
