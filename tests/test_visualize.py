"""nets.visualize: hooks record the right tensors and are always removed."""

import math

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


# --- grids, kernels, weight statistics -------------------------------------------------

from nets.visualize import (class_activation_map, grad_cam, localization_scores, map_grid,  # noqa: E402
                            normalize_maps, weight_stats)


def test_map_grid_shapes_follow_the_tiling():
    grey = map_grid(torch.rand(10, 5, 7), ncols=4, padding=1)
    assert grey.shape == (3 * 6 + 1, 4 * 8 + 1)             # 3 rows, 4 columns, 1-pixel borders
    colour = map_grid(torch.randn(6, 3, 3, 3), ncols=8, symmetric=True)
    assert colour.shape == (3, 1 * 4 + 1, 6 * 4 + 1)
    with pytest.raises(ValueError, match="map_grid takes"):
        map_grid(torch.rand(4, 2, 5, 5))


def test_each_and_joint_normalisation_differ_exactly_as_stated():
    maps = torch.stack([torch.linspace(0, 1, 9).view(3, 3), 100 * torch.linspace(0, 1, 9).view(3, 3)])
    each = normalize_maps(maps, "each")
    assert torch.allclose(each[0], each[1])                   # a 100x weaker map looks the same
    joint = normalize_maps(maps, "joint")
    assert joint[0].max() == pytest.approx(0.01) and joint[1].max() == 1
    sym = normalize_maps(torch.tensor([[[-2.0, 0.0, 1.0]]]), "each", symmetric=True)
    assert sym.flatten().tolist() == [0.0, 0.5, 0.75]         # zero is mid-grey
    assert normalize_maps(torch.ones(2, 3, 3)).eq(0).all()    # constant: 0, not NaN
    with pytest.raises(ValueError, match="mode must be"):
        normalize_maps(maps, "per-kernel")


def test_weight_stats_lists_parameters_not_bn_buffers_and_measures_change():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    rows = weight_stats(net)
    assert [r.name for r in rows] == ["0.weight", "1.weight", "1.bias"]   # no running_mean/var
    w = net[0].weight.detach()
    assert rows[0].std == pytest.approx(float(w.std()), rel=1e-6)        # ddof=1
    assert rows[0].absmax == pytest.approx(float(w.abs().max()))
    assert rows[2].sparsity == 1.0                                       # BN bias starts at 0
    copy = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    copy.load_state_dict(net.state_dict())
    changes = [r.change for r in weight_stats(copy, reference=net)]
    assert changes[:2] == [0.0, 0.0] and math.isnan(changes[2])   # BN bias: all-zero reference, NaN
    with torch.no_grad():
        copy[0].weight.mul_(1.5)
    assert weight_stats(copy, reference=net)[0].change == pytest.approx(0.5, rel=1e-5)


# --- CAM and Grad-CAM ---------------------------------------------------------------------

class GapNet(nn.Module):
    """conv (features) → ReLU → global average pool → linear: the architecture CAM needs."""

    def __init__(self, channels=4, classes=3):
        super().__init__()
        self.features = nn.Conv2d(1, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.features(x))), 1))


def test_cam_of_a_net_that_selects_one_channel_is_that_channel():
    torch.manual_seed(0)
    net = GapNet()
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.weight[1, 2] = 1.0          # class 1 reads channel 2 only
    x = torch.randn(2, 1, 6, 6)
    maps, logits = class_activation_map(net, x, features="relu", target=1, upsample=False)
    assert torch.allclose(maps, torch.relu(net.features(x))[:, 2])
    # and the map averages back to the logit
    assert torch.allclose(maps.mean((1, 2)) + net.fc.bias[1], logits[:, 1], atol=1e-6)


def test_cam_refuses_a_layer_that_does_not_feed_the_pooling():
    net = GapNet()
    with pytest.raises(ValueError, match="does not average to the logits"):
        class_activation_map(net, torch.randn(2, 1, 6, 6), features="features")  # pre-ReLU: identity fails
    with pytest.raises(ValueError, match="final nn.Linear"):
        class_activation_map(net, torch.randn(2, 1, 6, 6), features="relu", fc="pool")


def test_grad_cam_equals_relu_cam_over_hw_for_a_gap_linear_net():
    torch.manual_seed(1)
    net = GapNet(channels=5, classes=4)
    x = torch.randn(3, 1, 7, 6)
    cam, _ = class_activation_map(net, x, features="relu", upsample=False)
    gc, logits = grad_cam(net, x, "relu", upsample=False)      # the layer is followed by nothing in place
    assert torch.allclose(gc, cam.clamp_min(0) / (7 * 6), atol=1e-6)
    # same through the in-place layer: 'features' is overwritten by ReLU(inplace=True) right after it,
    # and its Grad-CAM must still use the pre-ReLU values with the gradient through the ReLU
    gc_pre, _ = grad_cam(net, x, "features", relu=False, upsample=False)
    a = net.features(x).detach()
    c = logits.argmax(1)
    grad = net.fc.weight[c].detach()[:, :, None, None] * (a > 0) / (7 * 6)
    assert torch.allclose(gc_pre, (grad.mean((2, 3), keepdim=True) * a).sum(1), atol=1e-6)
    assert all(not m._forward_hooks for m in net.modules())


def test_grad_cam_removes_its_hook_after_an_error_and_restores_the_mode():
    net = GapNet().train()
    with pytest.raises(ValueError, match="target classes"):
        grad_cam(net, torch.randn(1, 1, 5, 5), "relu", target=7)
    assert all(not m._forward_hooks for m in net.modules()) and net.training
    with pytest.raises(ValueError, match="no submodule named"):
        grad_cam(net, torch.randn(1, 1, 5, 5), "layer4")


def test_grad_cam_maps_upsample_to_the_input_size():
    maps, _ = grad_cam(GapNet(), torch.randn(2, 1, 9, 11), "relu")
    assert maps.shape == (2, 9, 11) and (maps >= 0).all()


# --- scoring maps against masks ----------------------------------------------------------

def test_localization_scores_of_perfect_inverted_and_flat_maps():
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[:, 1:3, 1:3] = 5                                   # object: 4 of 16 pixels
    perfect = masks.float()
    s = localization_scores(perfect, masks)
    assert s["area"].tolist() == [0.25, 0.25]
    assert s["energy"].tolist() == [1.0, 1.0] and s["pointing"].tolist() == [1.0, 1.0]
    assert s["auc"].tolist() == [1.0, 1.0]
    s = localization_scores(-perfect, masks)                 # all mass on the background
    assert s["auc"].tolist() == [0.0, 0.0]
    s = localization_scores(torch.ones(2, 4, 4), masks)      # flat: chance on every score
    assert s["energy"].tolist() == [0.25, 0.25] and s["auc"].tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="same shape|must both"):
        localization_scores(torch.ones(2, 4, 4), masks[:, :3])


def test_a_random_map_scores_chance_on_average():
    torch.manual_seed(0)
    masks = torch.zeros(400, 8, 8, dtype=torch.long)
    masks[:, :4, :4] = 1                                     # a quarter of the image
    s = localization_scores(torch.rand(400, 8, 8), masks)
    assert abs(s["energy"].mean() - 0.25) < 0.01
    assert abs(s["auc"].mean() - 0.5) < 0.02
    assert abs(s["pointing"].mean() - 0.25) < 0.07           # binomial sd of the mean: 0.022


def test_show_helpers_draw_one_image_and_refuse_a_batch():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nets.visualize import show_feature_maps, show_kernels, show_weight_histograms

    ax = show_feature_maps(torch.rand(1, 6, 5, 5), n=4, ncols=2)
    assert ax.images[0].get_array().shape == (2 * 6 + 1, 2 * 6 + 1)
    with pytest.raises(ValueError, match="one image's maps"):
        show_feature_maps(torch.rand(2, 6, 5, 5))
    ax = show_kernels(nn.Conv2d(3, 5, 3))                          # RGB kernels: a colour image
    assert ax.images[0].get_array().shape == (5, 1 * 4 + 1, 5 * 4 + 1)[1:] + (3,)
    with pytest.raises(ValueError, match="conv weights"):
        show_kernels(torch.rand(3, 3, 3))
    with pytest.raises(ValueError, match="no parameter named"):
        show_weight_histograms(small_net(), ["0.weight", "5.weight"])
    plt.close("all")
