"""Squeeze-and-Excitation: the block is a pure per-channel rescaling, never squeezes to zero
channels, and SE-ResNet is exactly a ResNet with SE in its attention slot."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nets import resnet
from nets.measure import count_params
from twins import assert_open_attention_equals_plain
from nets.se import (SqueezeExcitation, se_resnet18, se_resnet34, se_resnet50, se_resnet101,
                     se_resnet152)


def _hand_se(se: SqueezeExcitation, x: torch.Tensor) -> torch.Tensor:
    """The paper's equations with plain matrix products: s = σ(W2 δ(W1 z + b1) + b2)."""
    z = x.mean(dim=(2, 3))                                         # (N, C)
    w1, w2 = se.fc1.weight[:, :, 0, 0], se.fc2.weight[:, :, 0, 0]
    h = torch.relu(z @ w1.T + se.fc1.bias)
    return torch.sigmoid(h @ w2.T + se.fc2.bias)[:, :, None, None]


@pytest.mark.parametrize("channels, reduction, squeeze", [
    (64, 16, 8),      # SE-ResNet-18's first stage: 8, not 64 // 16 = 4 (timm's rounding)
    (256, 16, 16),
    (2048, 16, 128),
    (64, 4, 16),      # reduction is honoured
    (4, 16, 8),       # 4 // 16 would be 0 channels
    (1, 16, 8),
])
def test_squeeze_width_is_rounded_never_zero(channels, reduction, squeeze):
    se = SqueezeExcitation(channels, reduction=reduction)
    assert se.fc1.out_channels == squeeze and se.fc2.in_channels == squeeze
    assert count_params(se) == 2 * channels * squeeze + squeeze + channels


@pytest.mark.parametrize("size", [(7, 5), (1, 1), (13, 4), (2, 31)])
def test_se_is_a_per_channel_rescaling(size):
    torch.manual_seed(0)
    se = SqueezeExcitation(32).eval()
    x = torch.randn(2, 32, *size)
    with torch.no_grad():
        y = se(x)
        s = se.channel_weights(x)
    assert y.shape == x.shape and s.shape == (2, 32, 1, 1)
    assert ((s > 0) & (s < 1)).all()
    torch.testing.assert_close(y, x * s, rtol=0, atol=0)
    # The same s on every pixel: y / x is constant over H x W.
    ratio = y / x
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))
    # Against the paper's equations; conv vs matmul sum in different orders, hence
    # float32's default tolerance rather than exact equality.
    torch.testing.assert_close(s, _hand_se(se, x))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_narrow_input_gate_still_depends_on_the_input():
    """4 channels with reduction 16: the notes' ``4 // 16 = 0`` leaves a gate that is the
    constant sigmoid(b2) for every image; ours still looks at the input."""
    torch.manual_seed(0)
    se = SqueezeExcitation(4, reduction=16)
    x1, x2 = torch.randn(1, 4, 5, 6), torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        assert not torch.equal(se.channel_weights(x1), se.channel_weights(x2))
    broken = nn.Linear(4, 4 // 16)                      # what the notes build
    assert broken.weight.numel() == 0


@pytest.mark.parametrize("gate, low, high", [(nn.Sigmoid, 0, 1), (nn.Tanh, -1, 1)])
def test_gate_and_pool_are_pluggable(gate, low, high):
    torch.manual_seed(0)
    x = torch.randn(2, 16, 6, 5)
    se = SqueezeExcitation(16, gate_layer=gate, pool="max")
    assert isinstance(se.gate, gate)
    with torch.no_grad():
        s = se.channel_weights(x)
        z = x.amax(dim=(2, 3), keepdim=True)
        expected = se.gate(se.fc2(se.act(se.fc1(z))))
    torch.testing.assert_close(s, expected, rtol=0, atol=0)
    assert ((s >= low) & (s <= high)).all()


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="pool"):
        SqueezeExcitation(16, pool="median")
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcitation(16, reduction=0)
    with pytest.raises(ValueError, match="channel"):
        SqueezeExcitation(0)
    se = SqueezeExcitation(16)
    with pytest.raises(ValueError, match="16 input channels, got 8"):
        se(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="3-d"):
        se(torch.randn(16, 4, 4))


# Reference parameter counts (REFERENCE.md: FC with bias, r = 16, timm's rounding).
SE_PARAMS = {
    se_resnet18: 11_779_624,
    se_resnet34: 21_960_416,
    se_resnet50: 28_088_024,
    se_resnet101: 49_326_872,
    se_resnet152: 66_821_848,
}
SE_BLOCKS = {se_resnet18: 8, se_resnet34: 16, se_resnet50: 16, se_resnet101: 33, se_resnet152: 50}


@pytest.mark.parametrize("builder", list(SE_PARAMS), ids=lambda b: b.__name__)
def test_se_resnet_parameter_counts(builder):
    with torch.device("meta"):           # shapes only: counting needs no real memory
        model = builder()
        small = builder(num_classes=10)
    assert count_params(model) == SE_PARAMS[builder]
    in_fc = model.fc.in_features
    assert count_params(small) == SE_PARAMS[builder] - 990 * (in_fc + 1)
    se_blocks = [m for m in model.modules() if isinstance(m, SqueezeExcitation)]
    assert len(se_blocks) == SE_BLOCKS[builder]
    blocks = [m for m in model.modules() if isinstance(m, (resnet.BasicBlock, resnet.Bottleneck))]
    assert all(isinstance(b.attn, SqueezeExcitation) for b in blocks)


def test_reduction_reaches_every_block():
    with torch.device("meta"):
        model = se_resnet50(reduction=8)
    widths = {m.channels: m.squeeze_channels for m in model.modules()
              if isinstance(m, SqueezeExcitation)}
    assert widths == {256: 32, 512: 64, 1024: 128, 2048: 256}


def test_builders_refuse_weights_and_a_second_attention():
    with pytest.raises(ValueError, match="no pretrained SE-ResNet"):
        se_resnet18(weights="DEFAULT")
    with pytest.raises(ValueError, match="attn_layer"):
        se_resnet18(attn_layer=nn.Identity)


def _force_gates_open(model: nn.Module) -> None:
    """fc2 weight 0 and bias 100: s = sigmoid(100), which is exactly 1.0 in float32."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SqueezeExcitation):
                m.fc2.weight.zero_()
                m.fc2.bias.fill_(100.0)


def _plain_and_open_se(plain_builder, se_builder, num_classes):
    torch.manual_seed(0)
    plain = plain_builder(num_classes=num_classes)
    model = se_builder(num_classes=num_classes)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == []
    se_keys = {k for k in model.state_dict() if ".attn." in k}
    assert set(missing) == se_keys
    assert {k.rsplit(".attn.", 1)[1] for k in se_keys} == {
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    _force_gates_open(model)
    assert torch.sigmoid(torch.tensor(100.0)).item() == 1.0
    return plain, model


@pytest.fixture(scope="module")
def open_se_resnet18():
    return _plain_and_open_se(resnet.resnet18, se_resnet18, num_classes=10)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("size", [(224, 224), (97, 131)])
def test_open_se_resnet18_equals_plain_resnet18(open_se_resnet18, train, size):
    assert_open_attention_equals_plain(open_se_resnet18, train, size, num_classes=10)


def test_open_se_resnet50_equals_plain_resnet50_at_odd_size():
    plain, model = _plain_and_open_se(resnet.resnet50, se_resnet50, num_classes=7)
    plain.eval()
    model.eval()
    torch.manual_seed(1)
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 7)
        torch.testing.assert_close(out, plain(x), rtol=0, atol=0)


def test_se_resnet50_forward_at_224():
    torch.manual_seed(0)
    model = se_resnet50().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
