"""CBAM: channel map (N, C, 1, 1), spatial map (N, 1, H, W), both applied as rescalings;
``reduction`` honoured without ever reaching zero channels; CBAM-ResNet is a ResNet with
CBAM in its attention slot and matches the authors' parameter count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets import resnet
from nets.cbam import (CBAM, ChannelAttention, SpatialAttention, cbam_resnet18, cbam_resnet34,
                       cbam_resnet50, cbam_resnet101, cbam_resnet152)
from nets.measure import count_macs, count_params
from twins import assert_open_attention_equals_plain
from nets.se import se_resnet50


@pytest.mark.parametrize("size", [(7, 5), (1, 1), (13, 4)])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_attention_map_shapes_and_rescaling(size, train):
    torch.manual_seed(0)
    cbam = CBAM(32).train(train)
    x = torch.randn(2, 32, *size)
    with torch.no_grad():
        mc = cbam.channel_attention(x)
        x1 = x * mc
        ms = cbam.spatial_attention(x1)
        y = cbam(x)
    assert mc.shape == (2, 32, 1, 1) and ms.shape == (2, 1, *size)
    assert ((mc > 0) & (mc < 1)).all() and ((ms > 0) & (ms < 1)).all()
    # F'' = M_s(F') ⊗ F' with F' = M_c(F) ⊗ F: channel first, then spatial.
    torch.testing.assert_close(y, x1 * ms, rtol=0, atol=0)
    assert y.shape == x.shape


def test_channel_attention_matches_the_equation():
    """M_c = σ(MLP(avg) + MLP(max)) with one shared MLP, written with matrix products."""
    torch.manual_seed(0)
    ca = ChannelAttention(48, reduction=8)
    x = torch.randn(3, 48, 9, 4)
    w1, w2 = ca.fc1.weight[:, :, 0, 0], ca.fc2.weight[:, :, 0, 0]

    def mlp(z):
        return torch.relu(z @ w1.T + ca.fc1.bias) @ w2.T + ca.fc2.bias

    with torch.no_grad():
        expected = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
        got = ca(x)
    # conv vs matmul: same sums in a different order, float32's default tolerance.
    torch.testing.assert_close(got, expected[:, :, None, None])


def test_spatial_attention_matches_the_equation():
    torch.manual_seed(0)
    sa = SpatialAttention(7).eval()
    with torch.no_grad():
        sa.conv[1].running_mean.fill_(0.3)
        sa.conv[1].running_var.fill_(2.0)
        sa.conv[1].weight.fill_(1.5)
        sa.conv[1].bias.fill_(-0.2)
    x = torch.randn(2, 10, 11, 6)
    with torch.no_grad():
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        conv = F.conv2d(pooled, sa.conv[0].weight, padding=3)
        bn = (conv - 0.3) / torch.sqrt(torch.tensor(2.0 + 1e-5)) * 1.5 - 0.2
        torch.testing.assert_close(sa(x), torch.sigmoid(bn))


def test_spatial_attention_concatenates_mean_then_max():
    """The paper's order [AvgPool; MaxPool]: a conv that only reads input channel 0 at its
    centre sees the channel mean."""
    sa = SpatialAttention(3, norm_layer=None)
    assert sa.conv[0].bias is not None            # no norm: the conv keeps its bias
    with torch.no_grad():
        sa.conv[0].weight.zero_()
        sa.conv[0].bias.zero_()
        sa.conv[0].weight[0, 0, 1, 1] = 1.0
    torch.manual_seed(0)
    x = torch.randn(1, 5, 4, 7)
    with torch.no_grad():
        torch.testing.assert_close(sa(x), torch.sigmoid(x.mean(1, keepdim=True)))


@pytest.mark.parametrize("kernel_size", [1, 3, 7])
def test_spatial_kernels_keep_the_size(kernel_size):
    sa = SpatialAttention(kernel_size).eval()
    with torch.no_grad():
        assert sa(torch.randn(1, 3, 5, 9)).shape == (1, 1, 5, 9)


@pytest.mark.parametrize("kernel_size", [0, 2, 4, 6, -3, 7.0])
def test_bad_kernel_sizes_are_refused(kernel_size):
    with pytest.raises(ValueError, match="odd kernel_size"):
        SpatialAttention(kernel_size)
    with pytest.raises(ValueError, match="odd kernel_size"):
        CBAM(16, kernel_size=kernel_size)


@pytest.mark.parametrize("channels, reduction, divisor, hidden", [
    (256, 16, 1, 16),
    (64, 16, 1, 4),      # the authors' 64 // 16
    (256, 8, 1, 32),     # reduction is honoured (the notes ignored their ``ratio``)
    (256, 4, 1, 64),
    (4, 16, 1, 1),       # 4 // 16 would be 0
    (8, 16, 1, 1),
    (64, 16, 8, 8),      # SE's (timm's) rounding on request
])
def test_hidden_width_honours_reduction_never_zero(channels, reduction, divisor, hidden):
    cbam = CBAM(channels, reduction=reduction, divisor=divisor)
    ca = cbam.channel_attention
    assert ca.hidden_channels == hidden == ca.fc1.out_channels == ca.fc2.in_channels
    x = torch.randn(2, channels, 3, 5)
    with torch.no_grad():
        assert cbam.eval()(x).shape == x.shape


def test_wrong_inputs_are_refused():
    cbam = CBAM(16)
    with pytest.raises(ValueError, match="16 input channels, got 8"):
        cbam(torch.randn(1, 8, 4, 4))
    # the parts check their input when used on their own (inside CBAM, CBAM checked it)
    with pytest.raises(ValueError, match="16 input channels, got 8"):
        ChannelAttention(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        SpatialAttention()(torch.randn(16, 4, 4))
    with pytest.raises(ValueError, match="reduction"):
        ChannelAttention(16, reduction=-1)


def _resnet_blocks(kind: str, layers):
    """Output channels of every residual block, stage by stage."""
    widths = (64, 128, 256, 512) if kind == "basic" else (256, 512, 1024, 2048)
    return [w for w, n in zip(widths, layers, strict=True) for _ in range(n)]


# The authors' CBAM: Linear(C, C//16) and Linear(C//16, C) with bias, a 7×7 conv (2 → 1,
# no bias) and a one-channel BatchNorm (2 parameters) in every block.
RESNET_PARAMS = {  # REFERENCE.md (torchvision)
    cbam_resnet18: (11_689_512, "basic", [2, 2, 2, 2]),
    cbam_resnet34: (21_797_672, "basic", [3, 4, 6, 3]),
    cbam_resnet50: (25_557_032, "bottleneck", [3, 4, 6, 3]),
    cbam_resnet101: (44_549_160, "bottleneck", [3, 4, 23, 3]),
    cbam_resnet152: (60_192_808, "bottleneck", [3, 8, 36, 3]),
}
CBAM_PARAMS = {
    cbam_resnet18: 11_779_392,
    cbam_resnet34: 21_960_468,
    cbam_resnet50: 28_089_624,   # REFERENCE.md: the authors' official code
    cbam_resnet101: 49_330_172,
    cbam_resnet152: 66_826_848,
}


@pytest.mark.parametrize("builder", list(CBAM_PARAMS), ids=lambda b: b.__name__)
def test_cbam_resnet_parameter_counts(builder):
    plain, kind, layers = RESNET_PARAMS[builder]
    blocks = _resnet_blocks(kind, layers)
    by_formula = plain + sum(2 * c * (c // 16) + c // 16 + c + 2 * 7 * 7 + 2 for c in blocks)
    assert by_formula == CBAM_PARAMS[builder]
    with torch.device("meta"):
        model = builder()
    assert count_params(model) == CBAM_PARAMS[builder]
    assert sum(isinstance(m, CBAM) for m in model.modules()) == len(blocks)


def test_cbam_resnet50_is_se_resnet50_plus_100_per_block():
    with torch.device("meta"):
        cbam50, se50 = cbam_resnet50(num_classes=10), se_resnet50(num_classes=10)
    assert count_params(cbam50) - count_params(se50) == 16 * 100


def test_builder_arguments_reach_every_block():
    with torch.device("meta"):
        model = cbam_resnet50(reduction=8, kernel_size=3)
    cbams = [m for m in model.modules() if isinstance(m, CBAM)]
    assert {m.channel_attention.hidden_channels * 8 == m.channels for m in cbams} == {True}
    assert {m.spatial_attention.kernel_size for m in cbams} == {3}
    with pytest.raises(ValueError, match="odd kernel_size"):
        cbam_resnet18(kernel_size=4)
    with pytest.raises(ValueError, match="no pretrained CBAM-ResNet"):
        cbam_resnet18(weights="DEFAULT")
    with pytest.raises(ValueError, match="attn_layer"):
        cbam_resnet18(attn_layer=nn.Identity)


def _open_gates(model: nn.Module) -> None:
    """Make both maps exactly 1: MLP output bias 100, spatial conv 0 and BN shift 100
    (σ(100) is 1.0 in float32; the BN sees an all-zero map, in eval and in train mode)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CBAM):
                m.channel_attention.fc2.weight.zero_()
                m.channel_attention.fc2.bias.fill_(100.0)
                m.spatial_attention.conv[0].weight.zero_()
                m.spatial_attention.conv[1].bias.fill_(100.0)


@pytest.fixture(scope="module")
def open_cbam_resnet18():
    torch.manual_seed(0)
    plain = resnet.resnet18(num_classes=10)
    model = cbam_resnet18(num_classes=10)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == []
    # BatchNorm fills in a missing ``num_batches_tracked`` itself (for old checkpoints), so
    # that buffer is not reported; everything else of CBAM is, and nothing else is.
    attn_keys = {k for k in model.state_dict() if ".attn." in k}
    assert set(missing) == {k for k in attn_keys if not k.endswith("num_batches_tracked")}
    assert {k.split(".attn.", 1)[1] for k in attn_keys} == {
        "channel_attention.fc1.weight", "channel_attention.fc1.bias",
        "channel_attention.fc2.weight", "channel_attention.fc2.bias",
        "spatial_attention.conv.0.weight", "spatial_attention.conv.1.weight",
        "spatial_attention.conv.1.bias", "spatial_attention.conv.1.running_mean",
        "spatial_attention.conv.1.running_var", "spatial_attention.conv.1.num_batches_tracked"}
    _open_gates(model)
    return plain, model


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("size", [(224, 224), (97, 131)])
def test_open_cbam_resnet18_equals_plain_resnet18(open_cbam_resnet18, train, size):
    assert_open_attention_equals_plain(open_cbam_resnet18, train, size, num_classes=10)


def test_cbam_resnet50_macs_at_224_and_forward_at_odd_size():
    """4.096 GMACs at 224×224 (REFERENCE.md, "V1.5"): ResNet-50's 4.089 plus the MLPs and
    the 7×7 spatial convs. The count runs one forward pass."""
    torch.manual_seed(0)
    model = cbam_resnet50().eval()
    macs = count_macs(model, (1, 3, 224, 224))
    assert round(macs / 1e9, 3) == 4.096
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 131))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
