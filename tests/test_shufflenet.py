"""ShuffleNet V1/V2 and channel_shuffle: torchvision equality for V2, the authors' V1
configurations, the papers' sizes and costs, pretrained weights offline, input checks."""

from __future__ import annotations


import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models.shufflenetv2 import channel_shuffle as tv_channel_shuffle

from nets import shufflenet as S
from nets.measure import count_macs, count_params
from twins import assert_pretrained_weights_load_offline, assert_same_outputs, assert_same_with_other_num_classes

V2_NAMES = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]
SIZES = [(224, 224), (97, 131)]  # square, and non-square with sides not multiples of 32


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- channel_shuffle

def test_channel_shuffle_hand_worked_example():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    # groups [0 1 2 | 3 4 5] -> rows of a 2x3 matrix, transposed and read out
    assert S.channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert S.channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_channel_shuffle_inverse_and_trivial_cases():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 3, 5)
    for g in (1, 2, 3, 4, 6, 12):
        y = S.channel_shuffle(x, g)
        assert torch.equal(S.channel_shuffle(y, 12 // g), x)        # the inverse permutation
        assert torch.equal(y, tv_channel_shuffle(x, g))              # same as torchvision's
        assert torch.equal(y.sort(dim=1).values, x.sort(dim=1).values)  # only reorders
    assert torch.equal(S.channel_shuffle(x, 1), x)
    assert torch.equal(S.channel_shuffle(x, 12), x)
    # after the shuffle, each of the g new groups holds one channel from every old group
    labels = torch.arange(12.0).reshape(1, 12) // 4                  # old group of each channel
    assert S.channel_shuffle(labels, 3).flatten().tolist() == [0, 1, 2] * 4
    # any (N, C, *) shape
    flat = torch.arange(4.0).reshape(1, 4)
    assert torch.equal(S.channel_shuffle(flat, 2), torch.tensor([[0.0, 2, 1, 3]]))


def test_channel_shuffle_authors_v1_order_is_the_inverse():
    # megvii's ShuffleNetV1 blocks.py reshapes the channels as (C/g, g) and permutes.
    torch.manual_seed(0)
    x, g = torch.randn(2, 12, 3, 3), 3
    authors = x.reshape(2, 12 // g, g, 3, 3).permute(0, 2, 1, 3, 4).reshape(2, 12, 3, 3)
    assert torch.equal(authors, S.channel_shuffle(x, 12 // g))
    assert not torch.equal(authors, S.channel_shuffle(x, g))


def test_channel_shuffle_bad_input():
    with pytest.raises(ValueError, match="5 channels"):
        S.channel_shuffle(torch.zeros(1, 5, 2, 2), 2)
    with pytest.raises(ValueError, match=r"\(N, C"):
        S.channel_shuffle(torch.zeros(6), 2)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="groups"):
            S.channel_shuffle(torch.zeros(1, 6, 2, 2), bad)


# --------------------------------------------------------------------------- ShuffleNet V2

@pytest.mark.parametrize("name", V2_NAMES)
def test_v2_matches_torchvision(name):
    torch.manual_seed(0)
    theirs, ours = getattr(tvm, name)(), getattr(S, name)()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    ours.load_state_dict(theirs.state_dict(), strict=True)
    # the biggest model once at 224 only; the others at both sizes
    assert_same_outputs(ours, theirs, SIZES[:1] if name.endswith("x2_0") else SIZES)


def test_v2_matches_torchvision_with_other_num_classes():
    assert_same_with_other_num_classes(S.shufflenet_v2_x0_5, tvm.shufflenet_v2_x0_5)


def test_v2_pretrained_weights_load_offline(offline_hub):
    assert_pretrained_weights_load_offline(offline_hub, S.shufflenet_v2_x1_0, tvm.shufflenet_v2_x1_0,
                                           "DEFAULT", tvm.ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1)


def test_v2_pretrained_weights_without_network_say_so(offline_hub):
    with pytest.raises(RuntimeError, match="network|[Oo]ffline"):
        S.shufflenet_v2_x0_5(weights="IMAGENET1K_V1", progress=False)
    with pytest.raises(ValueError, match="1000 classes"):
        S.shufflenet_v2_x1_0(weights="DEFAULT", num_classes=10)


@pytest.mark.parametrize("name, params, gmacs", [
    ("shufflenet_v2_x0_5", 1_366_792, 0.040),
    ("shufflenet_v2_x1_0", 2_278_604, 0.145),
    ("shufflenet_v2_x1_5", 3_503_624, 0.296),
    ("shufflenet_v2_x2_0", 7_393_996, 0.583),
])
def test_v2_params_and_macs_match_reference(name, params, gmacs):
    model = getattr(S, name)()
    assert count_params(model) == params
    # REFERENCE gives 3 decimals; x0.5 counts 0.0405, 1.2 % above the rounded 0.040
    assert round(count_macs(model, (1, 3, 224, 224)) / 1e9, 3) == gmacs


def test_v2_unit_rejects_width_change_at_stride_1():
    with pytest.raises(ValueError, match="keeps its width"):
        S.ShuffleV2Block(24, 48, stride=1)


# --------------------------------------------------------------------------- ShuffleNet V1

@pytest.mark.parametrize("groups, params, gmacs", [(3, 1_864_728, 0.1375), (8, 2_433_768, 0.1384)])
def test_v1_params_and_macs_match_reference(groups, params, gmacs):
    model = S.shufflenet_v1(groups=groups)
    assert count_params(model) == params
    assert round(count_macs(model, (1, 3, 224, 224)) / 1e9, 4) == gmacs


@pytest.mark.parametrize("groups, mflops", [(1, 143), (2, 140), (4, 133)])
def test_v1_other_group_counts_match_paper_table1(groups, mflops):
    # Paper Table 1 lists each g at about 140M (mult-adds, rounded); we count 143.1, 140.8,
    # 134.3: within 1 % of the paper's figures.
    assert count_macs(S.shufflenet_v1(groups=groups), (1, 3, 224, 224)) / 1e6 == pytest.approx(mflops, rel=0.011)


@pytest.mark.parametrize("groups, width, stem, stages", [
    # the authors' network.py tables (stage_out_channels[1:])
    (3, 0.5, 12, [120, 240, 480]),
    (3, 1.0, 24, [240, 480, 960]),
    (3, 2.0, 48, [480, 960, 1920]),
    (8, 0.5, 16, [192, 384, 768]),
    (8, 1.0, 24, [384, 768, 1536]),
    (8, 2.0, 48, [768, 1536, 3072]),
    (3, 1.5, 36, [360, 720, 1440]),  # authors keep 24 here: pass stem_channels=24
    (8, 1.5, 40, [576, 1152, 2304]),
])
def test_v1_width_multiplier_reproduces_authors_channels(groups, width, stem, stages):
    model = S.shufflenet_v1(groups=groups, width_mult=width)
    assert model.first_conv[0].out_channels == stem
    firsts = [model.features[i] for i in (0, 4, 12)]  # the stride-2 unit opening each stage
    widths = [unit.branch_main_2[0].out_channels + unit.branch_main_1[0].in_channels for unit in firsts]
    assert widths == stages
    assert model.classifier[0].in_features == stages[-1]


def test_v1_authors_1_5x_with_24_channel_stem():
    # authors' README: 1.5x g=3 292M FLOPs / 3.4M params; g=8 290M / 4.3M
    for groups, mmacs, mparams in [(3, 292, 3.4), (8, 290, 4.3)]:
        model = S.shufflenet_v1(groups=groups, width_mult=1.5, stem_channels=24)
        assert count_macs(model, (1, 3, 224, 224)) / 1e6 == pytest.approx(mmacs, rel=0.01)
        assert round(count_params(model) / 1e6, 1) == mparams


def test_v1_design_details():
    model = S.shufflenet_v1(groups=3)
    units = list(model.features)
    assert len(units) == 16 and [u.stride for u in units] == [2, 1, 1, 1, 2] + [1] * 7 + [2, 1, 1, 1]
    # the first 1x1 conv of stage 2's first unit is not grouped; every other 1x1 is
    assert units[0].branch_main_1[0].groups == 1
    assert all(u.branch_main_1[0].groups == 3 for u in units[1:])
    assert all(u.branch_main_2[0].groups == 3 for u in units)
    # bottleneck = out / 4; the depthwise conv has no ReLU after it (BN last in branch_main_1)
    assert units[1].branch_main_1[0].out_channels == 240 // 4
    assert isinstance(units[1].branch_main_1[-1], nn.BatchNorm2d)
    assert units[0].branch_main_2[0].out_channels == 240 - 24  # concat adds the 24 pooled ones
    assert isinstance(units[0].branch_proj, nn.AvgPool2d) and units[1].branch_proj is None
    assert model.classifier[0].bias is None


def test_v1_unit_shapes_and_shortcuts():
    torch.manual_seed(0)
    unit = S.ShuffleV1Block(240, 480, groups=3, stride=2).eval()
    x = torch.rand(1, 240, 13, 9)  # >= 0 like a ReLU output
    with torch.no_grad():
        y = unit(x)
        assert y.shape == (1, 480, 7, 5)
        # the first 240 channels are the 3x3 average-pooled input, untouched
        torch.testing.assert_close(y[:, :240], nn.functional.avg_pool2d(x, 3, 2, 1), rtol=0, atol=0)
        unit1 = S.ShuffleV1Block(240, 240, groups=3, stride=1).eval()
        assert unit1(x).shape == x.shape


def test_v1_trains_every_parameter_at_any_size():
    torch.manual_seed(0)
    model = S.shufflenet_v1(groups=8, width_mult=0.5, num_classes=7).train()
    model(torch.randn(2, 3, 61, 45)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 7)


@pytest.mark.parametrize("groups", [0, 5, 6, 16, True, "3"])
def test_v1_bad_groups(groups):
    with pytest.raises(ValueError, match="groups"):
        S.shufflenet_v1(groups=groups)


@pytest.mark.parametrize("width", [0, -1.0])
def test_v1_bad_width(width):
    with pytest.raises(ValueError, match="width_mult"):
        S.shufflenet_v1(groups=3, width_mult=width)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("builder", [S.shufflenet_v2_x0_5, S.shufflenet_v1])
def test_bad_input_raises_value_error(builder):
    model = builder().eval()
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 1000)
        assert model(torch.randn(1, 3, 33, 7)).shape == (1, 1000)
