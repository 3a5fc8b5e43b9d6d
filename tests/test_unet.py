"""U-Net: sizes, parameter counts and cost against REFERENCE.md, the paper's unpadded
geometry (572 → 388, seamless tiling), input checks, and training plumbing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from nets.measure import count_macs, count_params
from nets.unet import DoubleConv, Down, UNet, Up, center_crop, pad_to


def meta_unet(*args, **kwargs) -> UNet:
    """A full-size U-Net on the meta device: real structure and shapes, no memory or compute."""
    with torch.device("meta"):
        return UNet(*args, **kwargs)


# --------------------------------------------------------------------------- reference figures
@pytest.mark.parametrize("kwargs, expected", [
    (dict(in_channels=3, num_classes=2), 31_037_698),                     # Pytorch-UNet, transposed conv
    (dict(in_channels=3, num_classes=2, bilinear=True), 17_263_042),      # Pytorch-UNet, bilinear
    (dict(in_channels=1, num_classes=2, padded=False, norm_layer=None), 31_030_658),  # the paper
])
def test_parameter_counts(kwargs, expected):
    assert count_params(meta_unet(**kwargs)) == expected


def test_parameter_count_by_hand():
    """The paper's net counted part by part: 3x3 convs with bias, 2x2 up-convs halving the
    channels, a 1x1 head; each part against the built model, then the total."""
    def conv(cin, cout, k):
        return cin * cout * k * k + cout

    model = meta_unet(1, 2, padded=False, norm_layer=None)
    widths = [64, 128, 256, 512, 1024]
    assert count_params(model.inc) == conv(1, 64, 3) + conv(64, 64, 3)
    for down, cin, cout in zip(model.downs, widths[:-1], widths[1:], strict=True):
        assert count_params(down) == conv(cin, cout, 3) + conv(cout, cout, 3)
    for up, cin, cout in zip(model.ups, widths[-2::-1], widths[:0:-1], strict=True):
        assert count_params(up.up) == conv(cout, cin, 2)                    # halves the channels
        assert count_params(up.conv) == conv(cout, cin, 3) + conv(cin, cin, 3)
    assert count_params(model.outc) == conv(64, 2, 1)
    assert count_params(model) == 31_030_658


def test_macs_match_reference_and_a_hand_count():
    model = meta_unet(3, 2)
    macs = count_macs(model, (1, 3, 256, 256))
    assert abs(macs / 48.2e9 - 1) < 0.01            # REFERENCE.md: 48.2 GMACs at 256x256

    # Independent count: every conv costs (output pixels) x (C_in k^2) MACs; a transposed
    # conv costs (input pixels) x (C_out k^2). BN, ReLU, pooling and padding are not MACs.
    by_hand = 0

    def hook(module, inputs, output):
        nonlocal by_hand
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            by_hand += inputs[0].numel() * module.out_channels * k
        else:
            by_hand += output.numel() * module.in_channels * k

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 256, device="meta"))
    assert macs == by_hand


def test_full_size_paper_net_maps_572_to_388():
    model = meta_unet(1, 2, padded=False, norm_layer=None)
    y = model(torch.zeros(1, 1, 572, 572, device="meta"))
    assert y.shape == (1, 2, 388, 388)
    assert model.output_size(572) == (388, 388)


# --------------------------------------------------------------------------- padded: any size
SIZES = [(16, 16), (17, 23), (97, 131), (64, 48), (33, 31), (63, 65)]


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_padded_output_has_input_size(depth, bilinear):
    torch.manual_seed(0)
    model = UNet(3, 4, base_width=4, depth=depth, bilinear=bilinear).eval()
    m = 2 ** depth
    sizes = [(m, m), (m + 1, m), (m, 2 * m - 1), (2 * m + 1, 3 * m - 1)]     # minimum, 1 pixel off
    sizes += [s for s in SIZES if min(s) >= m]
    with torch.no_grad():
        for h, w in sizes:
            y = model(torch.randn(1, 3, h, w))
            assert y.shape == (1, 4, h, w), (depth, h, w)
            assert model.output_size((h, w)) == (h, w)
            assert torch.isfinite(y).all()


def test_padded_too_small_input_names_the_minimum():
    model = UNet(3, 2, base_width=4, depth=4)
    for h, w in [(15, 16), (16, 15), (8, 8), (1, 1)]:
        with pytest.raises(ValueError, match="16x16"):
            model(torch.zeros(1, 3, h, w))
    with pytest.raises(ValueError, match="4x4"):
        UNet(3, 2, base_width=4, depth=2)(torch.zeros(1, 3, 3, 40))


def test_pad_to_and_center_crop():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = pad_to(x, (4, 7))
    assert padded.shape == (1, 1, 4, 7)
    assert torch.equal(padded[..., 0:3, 1:5], x)     # odd pixel goes to the bottom / right
    assert padded.sum() == x.sum()
    assert torch.equal(center_crop(padded, (3, 4)), padded[..., 0:3, 1:5])
    assert torch.equal(center_crop(x, (1, 2)), x[..., 1:2, 1:3])
    assert torch.equal(pad_to(x, (3, 4)), x) and torch.equal(center_crop(x, (3, 4)), x)


# --------------------------------------------------------------------------- unpadded (the paper)
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_unpadded_size_rule(depth):
    # Closed form of the walk through the network: valid sizes are k * 2**depth - 4 and
    # the output is the input minus 12 * 2**depth - 8 (184 for depth 4).
    shrink = 12 * 2 ** depth - 8
    for s in range(1, 700):
        expected = s - shrink if (s + 4) % 2 ** depth == 0 and s - shrink >= 1 else None
        assert UNet.unpadded_output_size(s, depth) == expected, (depth, s)
        below, above = UNet.nearest_valid_sizes(s, depth)
        assert UNet.unpadded_output_size(above, depth) is not None and above >= s
        assert not any(UNet.unpadded_output_size(t, depth) for t in range(s, above))
        if below is not None:
            assert UNet.unpadded_output_size(below, depth) is not None and below <= s
            assert not any(UNet.unpadded_output_size(t, depth) for t in range(below + 1, s + 1))
        else:
            assert not any(UNet.unpadded_output_size(t, depth) for t in range(1, s + 1))
    assert UNet.unpadded_output_size(572, 4) == 388
    assert UNet.nearest_valid_sizes(570, 4) == (556, 572)
    assert UNet.nearest_valid_sizes(572, 4) == (572, 572)
    assert UNet.nearest_valid_sizes(100, 4) == (None, 188)


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_unpadded_forward_sizes(depth, bilinear):
    torch.manual_seed(0)
    model = UNet(1, 2, base_width=2, depth=depth, bilinear=bilinear, padded=False,
                 norm_layer=None).eval()
    smallest = UNet.nearest_valid_sizes(1, depth)[1]
    h, w = smallest, smallest + 2 ** depth
    with torch.no_grad():
        y = model(torch.randn(1, 1, h, w))
    assert y.shape[-2:] == model.output_size((h, w))
    assert y.shape[-2:] == (h - 12 * 2 ** depth + 8, w - 12 * 2 ** depth + 8)


def test_unpadded_572_to_388_small_width():
    torch.manual_seed(0)
    model = UNet(1, 2, base_width=2, padded=False, norm_layer=None).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)


def test_unpadded_overlap_tile():
    # The paper's seamless tiling: with valid convolutions each output pixel sees only its
    # own input window, so the output of a tile equals the matching part of the output of
    # the whole image when the tile offset is a multiple of 2**depth. Padded convolutions
    # see the zero border instead, so there the tile's output differs.
    torch.manual_seed(0)
    depth = 2
    model = UNet(1, 3, base_width=4, depth=depth, padded=False, norm_layer=None).eval()
    x = torch.randn(1, 1, 76, 92)                          # -> 36 x 52
    top, left, size = 8, 12, 60                            # tile 60 x 60 -> 20 x 20
    with torch.no_grad():
        whole = model(x)
        tile = model(x[..., top:top + size, left:left + size])
    # Same arithmetic on different tensor sizes may be blocked differently inside the
    # conv kernels, so the last bits can differ: float32's default tolerance, not equality.
    torch.testing.assert_close(tile, whole[..., top:top + 20, left:left + 20])

    padded = UNet(1, 3, base_width=4, depth=depth, norm_layer=None).eval()
    with torch.no_grad():
        whole = padded(x)[..., top:top + size, left:left + size]
        tile = padded(x[..., top:top + size, left:left + size])
    assert not torch.allclose(tile[..., 0, :], whole[..., 0, :])      # the tile's border


def test_unpadded_skip_is_center_cropped():
    # Cut the upsampled path of the last decoder step (zero its up-conv): each output pixel
    # then sees the input only through the level-0 skip, whose window must be centred on
    # the input pixel under the output pixel, i.e. shifted by (12 * 2**depth - 8) / 2.
    # A crop at any other offset would move the window.
    torch.manual_seed(0)
    depth = 2
    model = UNet(1, 1, base_width=4, depth=depth, padded=False, norm_layer=None).eval()
    with torch.no_grad():
        model.ups[-1].up.weight.zero_()
        model.ups[-1].up.bias.zero_()
    half = (12 * 2 ** depth - 8) // 2                     # 20
    x = torch.randn(1, 1, 60, 60, requires_grad=True)     # -> 20 x 20
    i, j = 3, 11
    model(x)[0, 0, i, j].backward()
    rows, cols = x.grad[0, 0].abs().sum(1), x.grad[0, 0].abs().sum(0)
    window = torch.zeros(60, dtype=torch.bool)
    # Two 3x3 valid convs in inc and two in the last decoder step: a 9 x 9 window.
    for support, centre in ((rows, i + half), (cols, j + half)):
        window.zero_()
        window[centre - 4:centre + 5] = True
        assert support[~window].abs().sum() == 0
        assert support[centre] > 0


def test_unpadded_invalid_size_names_the_nearest_valid_sizes():
    model = UNet(1, 2, base_width=2, padded=False, norm_layer=None)
    with pytest.raises(ValueError, match="556 or 572"):
        model(torch.zeros(1, 1, 570, 572))
    with pytest.raises(ValueError, match="width 573.*572 or 588"):
        model(torch.zeros(1, 1, 572, 573))
    with pytest.raises(ValueError, match="188"):
        model(torch.zeros(1, 1, 100, 100))
    with pytest.raises(ValueError, match="556 or 572"):
        model.output_size(570)


# --------------------------------------------------------------------------- bad input
def test_wrong_channels_rank_or_type_raise():
    model = UNet(3, 2, base_width=4, depth=2)
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="4-d|5-d"):
        model(torch.zeros(1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="Tensor"):
        model([[0.0]])


@pytest.mark.parametrize("kwargs", [dict(depth=0), dict(base_width=0), dict(num_classes=0),
                                    dict(in_channels=0), dict(depth=2.0)])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


# --------------------------------------------------------------------------- structure
def test_bilinear_versus_transposed():
    transposed = meta_unet(3, 2)
    bilinear = meta_unet(3, 2, bilinear=True)
    assert all(isinstance(up.up, nn.ConvTranspose2d) for up in transposed.ups)
    for up in bilinear.ups:
        assert isinstance(up.up, nn.Upsample) and not isinstance(up.up, nn.UpsamplingBilinear2d)
        assert up.up.mode == "bilinear" and up.up.align_corners and up.up.scale_factor == 2
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in bilinear.modules())
    # Pytorch-UNet's halving: the bottleneck and the decoder hand up half the channels.
    assert [d[1][-1][0].out_channels for d in transposed.downs] == [128, 256, 512, 1024]
    assert [d[1][-1][0].out_channels for d in bilinear.downs] == [128, 256, 512, 512]
    assert [u.conv[-1][0].out_channels for u in transposed.ups] == [512, 256, 128, 64]
    assert [u.conv[-1][0].out_channels for u in bilinear.ups] == [256, 128, 64, 64]
    assert [u.conv[0][0].out_channels for u in bilinear.ups] == [512, 256, 128, 64]


def test_bilinear_and_transposed_differ_on_the_same_input():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 37, 41)
    outs = []
    for bilinear in (False, True):
        torch.manual_seed(1)
        model = UNet(3, 2, base_width=4, depth=3, bilinear=bilinear).eval()
        with torch.no_grad():
            outs.append(model(x))
    assert outs[0].shape == outs[1].shape == (1, 2, 37, 41)
    assert not torch.allclose(outs[0], outs[1])


@pytest.mark.parametrize("bilinear", [False, True])
def test_batch_norm_in_encoder_and_decoder(bilinear):
    depth = 3
    model = UNet(3, 2, base_width=4, depth=depth, bilinear=bilinear)
    double_convs = [model.inc] + [d[1] for d in model.downs] + [u.conv for u in model.ups]
    assert len(double_convs) == 2 * depth + 1
    for block in double_convs:
        for unit in block:                              # Conv (no bias) -> BN -> ReLU
            assert [type(m) for m in unit] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
            assert unit[0].bias is None and unit[0].padding == (1, 1)
    plain = UNet(3, 2, base_width=4, depth=depth, bilinear=bilinear, padded=False, norm_layer=None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    for block in [plain.inc] + [d[1] for d in plain.downs] + [u.conv for u in plain.ups]:
        for unit in block:                              # Conv (with bias) -> ReLU
            assert [type(m) for m in unit] == [nn.Conv2d, nn.ReLU]
            assert unit[0].bias is not None and unit[0].padding == (0, 0)


def test_norm_layer_is_injected_everywhere():
    model = UNet(3, 2, base_width=8, depth=2, norm_layer=lambda c: nn.GroupNorm(4, c))
    norms = [m for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert len(norms) == 2 * (2 * 2 + 1)                # two per DoubleConv, 2·depth + 1 of them
    assert all(isinstance(m, nn.GroupNorm) and m.num_groups == 4 for m in norms)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 20, 12)).shape == (1, 2, 20, 12)


def test_named_parts():
    model = UNet(3, 2, base_width=4, depth=3)
    assert isinstance(model.inc, DoubleConv) and isinstance(model.outc, nn.Conv2d)
    assert all(isinstance(d, Down) and isinstance(d[0], nn.MaxPool2d) for d in model.downs)
    assert all(isinstance(u, Up) for u in model.ups)
    assert len(model.downs) == len(model.ups) == 3


# --------------------------------------------------------------------------- use
def test_batch_size_one_in_eval_mode():
    torch.manual_seed(0)
    model = UNet(3, 2, base_width=8, depth=4).eval()
    x = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        one = model(x[:1])
        two = model(x)
    assert one.shape == (1, 2, 33, 47)
    # Eval-mode BN uses running statistics, so samples are independent; the conv kernels
    # may block a batch of 1 differently from a batch of 2: float32's default tolerance.
    torch.testing.assert_close(one, two[:1])


@pytest.mark.parametrize("bilinear, padded", [(False, True), (True, True), (False, False)])
def test_gradients_reach_every_parameter(bilinear, padded):
    torch.manual_seed(0)
    model = UNet(3, 3, base_width=4, depth=3, bilinear=bilinear, padded=padded,
                 norm_layer=nn.BatchNorm2d if padded else None).train()
    size = (29, 35) if padded else (92, 100)
    x = torch.randn(2, 3, *size)
    logits = model(x)
    target = torch.randint(0, 3, (2, *logits.shape[-2:]))
    F.cross_entropy(logits, target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_binary_segmentation_with_one_class():
    torch.manual_seed(0)
    model = UNet(1, 1, base_width=4, depth=2).train()
    x = torch.randn(2, 1, 21, 30)
    logits = model(x)
    assert logits.shape == (2, 1, 21, 30)
    mask = (x > 0).float()
    loss = F.binary_cross_entropy_with_logits(logits, mask)
    loss.backward()
    assert torch.isfinite(loss) and model.outc.weight.grad is not None


# --------------------------------------------------------------------------- ablation and gates
def test_no_skip_variant_has_the_same_parameters_and_names():
    plain = meta_unet(3, 2, base_width=8, depth=3)
    no_skip = meta_unet(3, 2, base_width=8, depth=3, skip_connections=False)
    assert count_params(plain) == count_params(no_skip) == 121_186
    assert list(plain.state_dict()) == list(no_skip.state_dict())


def test_no_skip_decoder_sees_the_input_only_through_the_bottleneck():
    # Without skips the output is a function of the bottleneck map alone (2**depth times
    # coarser than the input): replaying the decoder from the recorded bottleneck with
    # random tensors in the skips' place gives the same output. In the plain net the skip
    # does matter.
    torch.manual_seed(0)
    model = UNet(3, 2, base_width=4, depth=3, skip_connections=False).eval()
    x = torch.randn(1, 3, 32, 32)
    seen = {}
    handle = model.downs[-1].register_forward_hook(lambda m, a, out: seen.setdefault("b", out))
    with torch.no_grad():
        y = model(x)
    handle.remove()
    # replay the decoder from the bottleneck alone, skips replaced by anything: same output
    with torch.no_grad():
        z = seen["b"]
        for up, level in zip(model.ups, (2, 1, 0)):
            z = up(z, torch.randn(1, 4 * 2 ** level, 32 // 2 ** level, 32 // 2 ** level))
        torch.testing.assert_close(model.outc(z), y)
    plain = UNet(3, 2, base_width=4, depth=3).eval()
    with torch.no_grad():
        a = plain.ups[-1](torch.randn(1, 8, 16, 16), torch.zeros(1, 4, 32, 32))
        b = plain.ups[-1](torch.randn(1, 8, 16, 16) * 0, torch.randn(1, 4, 32, 32))
    assert not torch.allclose(a, b)


def test_default_state_dict_names_unchanged():
    names = list(meta_unet(3, 2, base_width=8, depth=2).state_dict())
    assert not any("gate" in n for n in names)
    assert names[0] == "inc.0.0.weight" and names[-1] == "outc.bias"
    assert "ups.0.up.weight" in names and "downs.1.1.1.0.weight" in names


def test_attention_gate_shapes_parameters_and_range():
    from nets.unet import AttentionGate
    torch.manual_seed(0)
    gate = AttentionGate(16, 16)
    x, g = torch.randn(2, 16, 12, 10), torch.randn(2, 16, 12, 10)
    out = gate(x, g)
    assert out.shape == x.shape
    alpha = gate.last_alpha
    assert alpha.shape == (2, 1, 12, 10) and 0 < alpha.min() and alpha.max() < 1
    torch.testing.assert_close(out, alpha * x)
    # W_x (no bias) 16*8, W_g 16*8 + 8, psi 8 + 1
    assert count_params(gate) == 16 * 8 + 16 * 8 + 8 + 8 + 1
    model = UNet(3, 2, base_width=8, depth=3, gate_layer=AttentionGate)
    assert all(isinstance(up.gate, AttentionGate) for up in model.ups)
    extra = count_params(model) - count_params(UNet(3, 2, base_width=8, depth=3))
    assert extra == sum(2 * c * (c // 2) + c // 2 + c // 2 + 1 for c in (32, 16, 8))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 37, 29)).shape == (1, 2, 37, 29)


def test_attention_gate_closed_is_the_no_skip_net():
    # A gate whose psi bias is very negative passes (almost) nothing: the gated net then
    # computes what the no-skip net with the same weights computes.
    from nets.unet import AttentionGate
    torch.manual_seed(0)
    gated = UNet(3, 2, base_width=4, depth=2, gate_layer=AttentionGate).eval()
    no_skip = UNet(3, 2, base_width=4, depth=2, skip_connections=False).eval()
    no_skip.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    with torch.no_grad():
        for up in gated.ups:
            up.gate.psi.weight.zero_()
            up.gate.psi.bias.fill_(-100.0)
        x = torch.randn(1, 3, 24, 24)
        torch.testing.assert_close(gated(x), no_skip(x))
