"""nets.cifar_resnet: the ResNet paper's CIFAR nets (§4.2) and their plain twins."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets.cifar_resnet import CifarResNet, ZeroPadShortcut, cifar_plain, cifar_resnet, make_shortcut
from nets.measure import count_params
from nets.resnet import BasicBlock

# REFERENCE.md: option A, width 16, 10 classes (paper: 0.27M/0.46M/0.66M/0.85M/1.7M).
PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


pytestmark = pytest.mark.usefixtures("one_thread")


def blocks_of(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


@pytest.mark.parametrize("depth", list(PARAMS))
def test_parameter_counts_match_reference_and_plain_twin(depth):
    resnet, plain = cifar_resnet(depth), cifar_plain(depth)
    assert count_params(resnet) == PARAMS[depth]
    assert count_params(plain) == PARAMS[depth]
    n = (depth - 2) // 6
    assert len(blocks_of(resnet)) == len(blocks_of(plain)) == 3 * n
    convs = [m for m in resnet.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth                      # 6n + 1 convs and the fc: no shortcut convs


@pytest.mark.parametrize("depth", [20, 56])
def test_option_b_adds_exactly_two_projections(depth):
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)   # 1×1 conv + BN γ, β, twice
    assert count_params(cifar_resnet(depth, shortcut="B")) == PARAMS[depth] + projections
    model = cifar_resnet(depth, shortcut="B")
    shortcuts = [b.downsample for b in blocks_of(model) if b.downsample is not None]
    assert len(shortcuts) == 2
    assert [s[0].stride for s in shortcuts] == [(2, 2), (2, 2)]


def test_plain_twin_has_no_shortcuts():
    model = cifar_plain(20)
    assert all(not b.shortcut and b.downsample is None for b in blocks_of(model))
    assert all(b.shortcut for b in blocks_of(cifar_resnet(20)))
    assert not any(isinstance(m, ZeroPadShortcut) for m in model.modules())


def test_plain_block_is_the_residual_block_minus_the_addition():
    torch.manual_seed(0)
    block = BasicBlock(16, 16).eval()
    plain = BasicBlock(16, 16, shortcut=False).eval()
    plain.load_state_dict(block.state_dict(), strict=True)
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        residual_branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        torch.testing.assert_close(plain(x), torch.relu(residual_branch), rtol=0, atol=0)
        torch.testing.assert_close(block(x), torch.relu(residual_branch + x), rtol=0, atol=0)


@pytest.mark.parametrize("builder", [cifar_resnet, cifar_plain])
@pytest.mark.parametrize("size, features", [((32, 32), (8, 8)), ((16, 16), (4, 4)),
                                            ((17, 23), (5, 6)), ((1, 1), (1, 1))])
def test_output_shapes(builder, size, features):
    torch.manual_seed(0)
    model = builder(20, num_classes=7).eval()
    x = torch.randn(1, 3, *size)                          # batch 1 in eval mode
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 64, *features)
        assert model(x).shape == (1, 7)
    model.train()
    assert model(torch.randn(2, 3, *size)).shape == (2, 7)


def test_width_and_channels():
    torch.manual_seed(0)
    model = cifar_resnet(8, width=8, in_channels=1, num_classes=3, shortcut="B")
    assert model.num_features == 32
    assert model.fc.in_features == 32
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 16, 16)).shape == (1, 3)
    # 3×3×1×8 stem + BN, 3 stages of one block, two projections, fc
    stages = [(8, 8), (8, 16), (16, 32)]
    expected = 9 * 8 + 16 + sum(9 * i * o + 9 * o * o + 4 * o for i, o in stages) \
        + (8 * 16 + 32) + (16 * 32 + 64) + 32 * 3 + 3
    assert count_params(model) == expected


@pytest.mark.parametrize("depth", [0, 2, 18, 21, 19, 56.0, "20"])
def test_invalid_depth_raises_value_error(depth):
    with pytest.raises(ValueError, match=r"6n\+2.*20, 26, 32, 44, 56, 110"):
        cifar_resnet(depth)
    with pytest.raises(ValueError, match=r"6n\+2"):
        cifar_plain(depth)


def test_bad_arguments_and_inputs_raise_value_error():
    with pytest.raises(ValueError, match="'A' or 'B'"):
        cifar_resnet(20, shortcut="C")
    with pytest.raises(ValueError, match="'A' or 'B'"):
        cifar_resnet(20, shortcut=None)
    with pytest.raises(ValueError, match="zero_init_residual"):
        CifarResNet(20, shortcut=None, zero_init_residual=True)
    with pytest.raises(ValueError, match="only add channels"):
        ZeroPadShortcut(32, 16, 2)
    model = cifar_resnet(20)
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 9, 7)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 5, 4)                     # ceil(9/2), ceil(7/2), like a strided 3×3 conv
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0
    assert count_params(ZeroPadShortcut(16, 32, 2)) == 0
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1)
    assert conv(x).shape == out.shape


@pytest.mark.parametrize("kind", ["A", "B"])
def test_stride_is_respected_even_when_channels_match(kind):
    """The source notes used a bare identity whenever channel counts matched, which breaks
    (or silently mis-adds) on a stride-2 block."""
    assert make_shortcut(kind, 16, 16, stride=1) is None
    shortcut = make_shortcut(kind, 16, 16, stride=2)
    assert shortcut is not None
    block = BasicBlock(16, 16, stride=2, downsample=shortcut).eval()
    x = torch.randn(2, 16, 11, 8)
    with torch.no_grad():
        assert block(x).shape == (2, 16, 6, 4)
    if kind == "A":
        assert torch.equal(shortcut(x), x[:, :, ::2, ::2])
    else:
        assert shortcut[0].stride == (2, 2) and count_params(shortcut) == 16 * 16 + 2 * 16


@pytest.mark.parametrize("train", [False, True])
def test_zero_init_residual_makes_each_block_relu_of_its_shortcut(train):
    torch.manual_seed(0)
    model = cifar_resnet(20, zero_init_residual=True).train(train)
    blocks = blocks_of(model)
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) for b in blocks)

    records = []

    def hook(block, args, output):
        x, = args
        records.append((block, x.clone(), output.clone()))

    handles = [b.register_forward_hook(hook) for b in blocks]
    x = torch.randn(2, 3, 17, 23)
    with torch.no_grad():
        features = model.forward_features(x)
        stem = model.relu(model.bn1(model.conv1(x)))
    for h in handles:
        h.remove()

    assert len(records) == len(blocks)
    for block, block_in, block_out in records:
        shortcut = block_in if block.downsample is None else block.downsample(block_in)
        torch.testing.assert_close(block_out, torch.relu(shortcut), rtol=0, atol=0)
        if block.downsample is None:                      # identity blocks pass non-negative x through
            torch.testing.assert_close(block_out, block_in, rtol=0, atol=0)
    # so the whole trunk is the stem's output subsampled by 4 and zero-padded to 64 channels
    expected = F.pad(stem[:, :, ::4, ::4], (0, 0, 0, 0, 0, 48))
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_attention_slot_reaches_every_block():
    seen = []

    def attn_layer(channels: int) -> nn.Module:
        seen.append(channels)
        return nn.Identity()

    for builder in (cifar_resnet, cifar_plain):
        seen.clear()
        builder(20, attn_layer=attn_layer)
        assert seen == [16] * 3 + [32] * 3 + [64] * 3


def test_norm_layer_is_injected():
    model = cifar_resnet(14, shortcut="B", norm_layer=lambda c: nn.GroupNorm(4, c))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.layer2[0].downsample[1], nn.GroupNorm)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
