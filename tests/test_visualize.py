"""nets.visualize: hooks record the right tensors and are always removed."""

import pytest
import torch
from torch import nn

import nets
from nets.visualize import activations, capture, shape_table


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))


def test_capture_records_the_outputs_the_next_layer_sees():
    torch.manual_seed(0)
    net = small_net()
    x = torch.randn(2, 3, 5, 5)
    with capture(net, ["0", "2"]) as seen:
        y = net(x)
    assert torch.equal(seen["2"], y)
    # layer 0's output was later clamped in place by ReLU(inplace=True); the clone kept it
    assert (seen["0"] < 0).any()
    assert torch.allclose(net[0](x), seen["0"])


def test_hooks_are_removed_also_when_forward_raises():
    net = small_net()
    with pytest.raises(RuntimeError):
        with capture(net, None):
            net(torch.randn(1, 5, 5, 5))       # wrong channel count: conv raises
    assert all(not m._forward_hooks for m in net.modules())


def test_unknown_layer_names_raise_a_clear_error():
    with pytest.raises(ValueError, match="no submodule named"):
        activations(small_net(), torch.randn(1, 3, 4, 4), ["conv9"])
    with pytest.raises(ValueError, match="sequence of module names"):
        activations(small_net(), torch.randn(1, 3, 4, 4), "0")


def test_activations_restores_training_mode():
    net = small_net().train()
    activations(net, torch.randn(1, 3, 4, 4))
    assert net.training


def test_shape_table_of_unet_follows_the_u():
    net = nets.UNet(3, 2, base_width=8, depth=2)
    rows = {r.name: r for r in shape_table(net, torch.randn(1, 3, 37, 40),
                                           ["inc", "downs.0", "downs.1", "ups.0", "ups.1", "outc"])}
    assert rows["downs.1"].output == ((1, 32, 9, 10),)
    assert rows["ups.0"].inputs == ((1, 32, 9, 10), (1, 16, 18, 20))   # x and its skip
    assert rows["outc"].output == ((1, 2, 37, 40),)                    # odd sides restored
    assert sum(r.params for r in rows.values()) == sum(p.numel() for p in net.parameters())
