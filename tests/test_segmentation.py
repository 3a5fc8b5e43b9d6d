"""Segmentation metrics, losses and overlap-tile prediction (nets.segmentation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nets.segmentation import (DiceCELoss, boundary_f_score, boundary_map, dice_per_class,
                               error_by_distance, iou_per_class, predict_tiled, soft_dice_loss, unet_context)
from nets.train import confusion_matrix, mean_iou
from nets.unet import UNet


# --------------------------------------------------------------------------- Dice and IoU
def test_dice_and_iou_by_hand():
    # 3x3 maps, classes 0..2. Class 1: P = 3 pixels, T = 2 pixels, overlap 2 -> Dice 4/5,
    # IoU 2/3. Class 2: P = 1, T = 2, overlap 1 -> Dice 2/3, IoU 1/2. Class 0: P = 5, T = 5,
    # overlap 5 -> 1, 1.
    target = torch.tensor([[0, 1, 1],
                           [0, 0, 2],
                           [0, 0, 2]])
    pred = torch.tensor([[0, 1, 1],
                         [0, 0, 1],
                         [0, 0, 2]])
    # class 0: T = 5 pixels, P = 5, overlap 5
    dice = dice_per_class(pred, target, 3)
    iou = iou_per_class(pred, target, 3)
    torch.testing.assert_close(dice, torch.tensor([1.0, 4 / 5, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(iou, torch.tensor([1.0, 2 / 3, 1 / 2], dtype=torch.float64))
    torch.testing.assert_close(iou, dice / (2 - dice))                   # IoU = D / (2 - D)
    # the training loop's mean IoU is the mean of these
    assert math.isclose(mean_iou(confusion_matrix(pred, target, 3)), iou.mean().item())


def test_absent_class_is_nan_and_batches_pool():
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    pred = target.clone()
    pred[1, 0, 0] = 1                                     # one false positive in image 2
    dice = dice_per_class(pred, target, 3)
    assert math.isnan(dice[2]) and math.isnan(iou_per_class(pred, target, 3)[2])
    assert dice[1].item() == pytest.approx(2 * 8 / (9 + 8))
    assert torch.nanmean(dice).item() < 1.0


def test_perfect_and_disjoint():
    t = torch.tensor([[1, 1, 0, 0]])
    assert dice_per_class(t, t, 2).tolist() == [1.0, 1.0]
    assert dice_per_class(1 - t, t, 2).tolist() == [0.0, 0.0]


def test_metric_bad_input():
    t = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        dice_per_class(torch.zeros(2, 3, 4, 4, dtype=torch.long), t, 3)
    with pytest.raises(ValueError, match="argmax"):
        dice_per_class(t.float(), t, 3)
    with pytest.raises(ValueError, match="outside 0..1"):
        iou_per_class(t + 2, t, 2)
    with pytest.raises(ValueError, match="num_classes"):
        dice_per_class(t, t, 0)


# --------------------------------------------------------------------------- losses
def test_soft_dice_loss_values():
    target = torch.tensor([[[0, 1], [1, 1]]])
    perfect = F.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40 - 20   # softmax ~ one-hot
    assert soft_dice_loss(perfect, target, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)
    # uniform probabilities: class 0 has 1 pixel, class 1 has 3: Dice_c = 2 * 0.5 n_c / (2 + n_c)
    uniform = torch.zeros(1, 2, 2, 2)
    expected = 1 - (2 * 0.5 * 1 / (2 + 1) + 2 * 0.5 * 3 / (2 + 3)) / 2
    assert soft_dice_loss(uniform, target, eps=0.0).item() == pytest.approx(expected)
    wrong = -perfect
    assert soft_dice_loss(wrong, target, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)


def test_dice_ce_is_the_sum_and_has_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 6))
    loss = DiceCELoss()(logits, target)
    expected = F.cross_entropy(logits, target) + soft_dice_loss(logits, target)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad.abs().sum() > 0
    half = DiceCELoss(ce_weight=0.0, dice_weight=0.5)(logits, target)
    torch.testing.assert_close(half, 0.5 * soft_dice_loss(logits, target))


def test_soft_dice_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        soft_dice_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        soft_dice_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long))


# --------------------------------------------------------------------------- boundary metric
def square(size=20, top=5, left=5, side=8):
    m = torch.zeros(size, size, dtype=torch.long)
    m[top:top + side, left:left + side] = 1
    return m


def test_boundary_map_of_a_square():
    edge = boundary_map(square(side=4, top=2, left=2, size=8))
    # both sides of the edge: the square's outer ring (12 pixels) and the ring outside it
    # without its corners (16 pixels)
    assert edge.sum().item() == 12 + 16
    assert not edge[4, 4] and not edge[0, 0] and edge[2, 2] and edge[1, 3]


def test_boundary_f_score_of_shifted_masks():
    t = square()
    assert boundary_f_score(t, t, 0) == (1.0, 1.0, 1.0)
    shifted = torch.roll(t, 1, dims=1)                   # one pixel to the right
    f0, p0, r0 = boundary_f_score(shifted, t, 0)
    f1, _, _ = boundary_f_score(shifted, t, 1)
    assert f0 < 0.8 and f1 == 1.0                        # within 1 px everywhere
    far = torch.roll(t, 3, dims=1)
    f_far, _, _ = boundary_f_score(far, t, 1)
    assert f_far < f0 < f1
    # Dice barely notices the 1-pixel shift of an 8x8 square (7/8 overlap)
    assert dice_per_class(shifted, t, 2)[1].item() == pytest.approx(2 * 56 / 128)


def test_boundary_f_score_empty_and_bad_input():
    empty = torch.zeros(6, 6, dtype=torch.long)
    assert boundary_f_score(empty, empty, 1)[0] == 1.0
    assert boundary_f_score(empty, square(6, 1, 1, 3), 1)[0] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        boundary_f_score(empty, torch.zeros(6, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f_score(empty, empty, -1)
    with pytest.raises(ValueError, match="integer"):
        boundary_f_score(empty.float(), empty)


def test_error_by_distance():
    t = square(size=20, top=5, left=5, side=8)
    error, count = error_by_distance(t, t, 3)
    assert error.tolist() == [0.0] * 4 and count.sum().item() == 400
    # eroding the square by one pixel: only its outer ring (on the edge, d = 0) is wrong
    eroded = square(size=20, top=6, left=6, side=6)
    error, count = error_by_distance(eroded, t, 3)
    ring = 8 * 8 - 6 * 6
    assert error[0].item() == pytest.approx(ring / count[0].item()) and error[1:].sum() == 0
    assert count[0].item() == boundary_map(t).sum().item()
    with pytest.raises(ValueError, match="max_distance"):
        error_by_distance(t, t, 0)


# --------------------------------------------------------------------------- overlap-tile
def he_init(model):
    """The paper's init, N(0, 2 / fan_in): PyTorch's default shrinks the signal layer by
    layer, so a random net hardly depends on distant pixels and every test passes."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model


@pytest.mark.parametrize("depth", [2, 3])
def test_unet_context_is_the_receptive_field_radius(depth):
    assert unet_context(4) == (572 - 388) // 2 == 92
    # The gradient of one output pixel of a padded U-Net reaches unet_context(depth)
    # pixels to each side, plus up to 2**depth - 1 depending on where the pixel sits in
    # the pooling grid: the bound is reached, never exceeded.
    torch.manual_seed(0)
    model = he_init(UNet(1, 1, base_width=8, depth=depth)).eval()
    x = torch.randn(1, 1, 16, 256, requires_grad=True)
    reach = []
    for j in range(128, 128 + 2 ** depth):
        x.grad = None
        model(x)[0, 0, 8, j].backward()
        support = (x.grad[0, 0].abs().sum(0) > 0).nonzero().flatten()
        reach += [j - support.min().item(), support.max().item() - j]
    assert min(reach) >= unet_context(depth)
    assert max(reach) == unet_context(depth) + 2 ** depth - 1
    with pytest.raises(ValueError):
        unet_context(0)


@pytest.mark.parametrize("depth", [2, 3])
def test_tiled_equals_whole_for_padded_transposed_unet(depth):
    torch.manual_seed(0)
    model = he_init(UNet(3, 4, base_width=4, depth=depth)).eval()
    for m in model.modules():                            # non-trivial BN running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 150, 170)
    margin = unet_context(depth) + 2 ** depth
    with torch.no_grad():
        whole = model(x)
    tiled = predict_tiled(model, x, tile=48, margin=margin, align=2 ** depth)
    torch.testing.assert_close(tiled, whole)
    # too little context: the tiles' zero padding reaches the kept pixels
    short = predict_tiled(model, x, tile=48, margin=4, align=2 ** depth)
    assert (short - whole).abs().max() > 0.1
    # windows not aligned to the pooling grid (margin + 1 is odd): other 2x2 blocks pooled
    misaligned = predict_tiled(model, x, tile=48, margin=margin + 1, align=1)
    assert (misaligned - whole).abs().max() > 0.1


def test_tiled_bilinear_align_corners_is_only_close():
    # align_corners=True stretches each upsampling by (2h - 1) / (h - 1), which depends on
    # the map size, so a tile's upsampled grid is not a shifted piece of the whole image's.
    torch.manual_seed(0)
    depth = 2
    model = he_init(UNet(3, 2, base_width=4, depth=depth, bilinear=True)).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        whole = model(x)
    tiled = predict_tiled(model, x, tile=32, margin=unet_context(depth) + 2 ** depth + 8, align=4)
    diff = (tiled - whole).abs().max().item()
    assert 1e-2 < diff < whole.abs().max().item()


def test_predict_tiled_restores_mode_and_checks_input():
    model = UNet(3, 2, base_width=4, depth=2).train()
    x = torch.randn(1, 3, 40, 40)
    out = predict_tiled(model, x, tile=16, margin=24, align=4)
    assert out.shape == (1, 2, 40, 40) and model.training
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        predict_tiled(model, x[0], tile=16, margin=8)
    with pytest.raises(ValueError, match="tile"):
        predict_tiled(model, x, tile=0, margin=8)
    with pytest.raises(ValueError, match="margin"):
        predict_tiled(model, x, tile=16, margin=-1)
    unpadded = UNet(3, 2, base_width=4, depth=2, padded=False, norm_layer=None)
    with pytest.raises(ValueError, match="padded model"):
        predict_tiled(unpadded, torch.randn(1, 3, 108, 108), tile=100, margin=0)
