"""What chapter 5 adds to nets.cbam: the channel branch's pooling choice, the spatial-first
order, the conversion of the authors' spatial weights ([max; mean] -> [mean; max])."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import nets
from nets.cbam import CBAM, ChannelAttention, SpatialAttention, authors_spatial_weight, zero_init_spatial_gates


@pytest.mark.parametrize("pools", [("avg",), ("max",), ("avg", "max"), ("max", "avg"), "avg"])
def test_pool_types_select_the_descriptors(pools):
    torch.manual_seed(0)
    ca = ChannelAttention(12, reduction=4, pool_types=pools)
    x = torch.randn(2, 12, 5, 3)
    with torch.no_grad():
        logits = 0
        if "avg" in pools:
            logits = logits + ca.mlp(x.mean((2, 3), keepdim=True))
        if "max" in pools:
            logits = logits + ca.mlp(x.amax((2, 3), keepdim=True))
        torch.testing.assert_close(ca(x), torch.sigmoid(logits), rtol=0, atol=0)
    # the parameters and their names do not depend on the pooling
    assert ca.state_dict().keys() == ChannelAttention(12, reduction=4).state_dict().keys()


def test_avg_only_and_max_only_differ_from_both():
    torch.manual_seed(0)
    both = ChannelAttention(8, reduction=2)
    x = torch.randn(2, 8, 4, 4)
    outs = {}
    for pools in (("avg",), ("max",), ("avg", "max")):
        ca = ChannelAttention(8, reduction=2, pool_types=pools)
        ca.load_state_dict(both.state_dict())
        with torch.no_grad():
            outs[pools] = ca(x)
    assert not torch.allclose(outs[("avg",)], outs[("max",)])
    assert not torch.allclose(outs[("avg",)], outs[("avg", "max")])


@pytest.mark.parametrize("pools", [(), ("lse",), ("avg", "avg"), ["max", "mean"]])
def test_bad_pool_types_are_refused(pools):
    with pytest.raises(ValueError, match="pool_types"):
        ChannelAttention(8, pool_types=pools)
    with pytest.raises(ValueError, match="pool_types"):
        CBAM(8, pool_types=pools)


@pytest.mark.parametrize("divisor", [0, -8, 1.5])
def test_divisor_must_be_positive(divisor):
    with pytest.raises(ValueError, match="divisor"):
        ChannelAttention(8, divisor=divisor)


def test_spatial_then_channel_order():
    torch.manual_seed(0)
    cs = CBAM(16, reduction=4).eval()
    sc = CBAM(16, reduction=4, order="spatial-channel").eval()
    sc.load_state_dict(cs.state_dict())            # same parameters, same names
    x = torch.randn(2, 16, 6, 5)
    with torch.no_grad():
        x1 = x * cs.spatial_attention(x)
        expected = x1 * cs.channel_attention(x1)
        torch.testing.assert_close(sc(x), expected, rtol=0, atol=0)
        assert not torch.allclose(sc(x), cs(x))
    assert "spatial-channel" in repr(sc)
    with pytest.raises(ValueError, match="order"):
        CBAM(16, order="parallel")


def test_authors_spatial_weight_loads_their_gate():
    """A gate written the authors' way (ChannelPool = cat(max, mean)) equals ours after the
    weight conversion, and differs without it."""
    torch.manual_seed(0)
    w = torch.randn(1, 2, 7, 7)
    x = torch.randn(2, 10, 9, 8)
    with torch.no_grad():
        theirs = torch.sigmoid(F.conv2d(torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), 1),
                                        w, padding=3))
        ours = SpatialAttention(7, norm_layer=None)
        ours.conv[0].bias.zero_()
        ours.conv[0].weight.copy_(authors_spatial_weight(w))
        torch.testing.assert_close(ours(x), theirs)
        ours.conv[0].weight.copy_(w)
        assert (ours(x) - theirs).abs().max() > 0.1
    torch.testing.assert_close(authors_spatial_weight(authors_spatial_weight(w)), w, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(1, 2, k, k\)"):
        authors_spatial_weight(torch.randn(1, 3, 7, 7))


def test_zero_init_spatial_gates_gives_the_authors_half():
    """The authors zero the spatial BN's gamma: every untrained spatial map is exactly 1/2,
    in train and in eval mode; the channel maps and the rest of the net are untouched."""
    torch.manual_seed(0)
    model = nets.cifar_resnet(8, width=8, attn_layer=CBAM)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert zero_init_spatial_gates(model) == 3
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {k for k in before if k.endswith("spatial_attention.conv.1.weight")}
    maps = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: maps.append(out))
             for m in model.modules() if isinstance(m, SpatialAttention)]
    x = torch.randn(4, 3, 32, 32)
    for train in (True, False):
        model.train(train)
        maps.clear()
        with torch.no_grad():
            model(x)
        assert len(maps) == 3 and all(torch.equal(m, torch.full_like(m, 0.5)) for m in maps)
    for h in hooks:
        h.remove()


def test_zero_init_spatial_gates_needs_a_gate():
    with pytest.raises(ValueError, match="no CBAM spatial gate"):
        zero_init_spatial_gates(nets.cifar_resnet(8, width=8))
    with pytest.raises(ValueError, match="no CBAM spatial gate"):
        zero_init_spatial_gates(CBAM(16, norm_layer=None))
