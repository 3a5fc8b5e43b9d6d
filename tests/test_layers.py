"""nets.layers: the injected-part convention, the width check and input validation once per
forward."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

import nets
import nets.se
from nets.layers import ChecksInput, ConvNormAct, check_image_batch, check_width_mult


def test_conv_norm_act_calls_the_activation_factory_without_arguments():
    """Activations without an `inplace` argument (GELU, Sigmoid, Identity) must work."""
    for act in (nn.GELU, nn.Sigmoid, nn.ReLU, partial(nn.ReLU, inplace=True)):
        block = ConvNormAct(3, 4, activation_layer=act)
        assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, type(act())]
    assert ConvNormAct(3, 4, activation_layer=partial(nn.ReLU, inplace=True))[2].inplace
    # dropping parts keeps consecutive indices and gives the conv its bias back
    plain = ConvNormAct(3, 4, norm_layer=None, activation_layer=None)
    assert len(plain) == 1 and plain[0].bias is not None


@pytest.mark.parametrize("value", [0, -1, -0.5, float("nan"), True, "1.0", None])
def test_width_check_refuses_non_positive_numbers(value):
    with pytest.raises(ValueError, match="width_mult"):
        check_width_mult(value)
    for builder in (nets.mobilenet_v1, nets.mobilenet_v2, nets.shufflenet_v1):
        with pytest.raises(ValueError, match="width_mult"):
            builder(width_mult=value)


def test_check_image_batch_with_and_without_a_channel_count():
    check_image_batch(torch.zeros(2, 5, 3, 3))                      # any C
    check_image_batch(torch.zeros(2, 5, 3, 3), 5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*3-d.*unsqueeze"):
        check_image_batch(torch.zeros(5, 3, 3), owner="X")
    with pytest.raises(ValueError, match="X expects 4 input channels, got 5"):
        check_image_batch(torch.zeros(2, 5, 3, 3), 4, owner="X")
    with pytest.raises(ValueError, match="at least 8x4"):
        check_image_batch(torch.zeros(2, 5, 3, 3), min_size=(8, 4))
    with pytest.raises(ValueError, match="torch.Tensor"):
        check_image_batch([[1.0]])


MODELS = {
    "se_resnet18 with nets.BatchNorm2d": lambda: nets.se_resnet18(num_classes=3, norm_layer=nets.BatchNorm2d),
    "cbam_resnet18": lambda: nets.cbam_resnet18(num_classes=3),
    "mobilenet_v3_small": lambda: nets.mobilenet_v3_small(num_classes=3),
    "cifar_resnet with SE": lambda: nets.cifar_resnet(8, width=16, attn_layer=nets.SqueezeExcitation),
    "UNet with nets.BatchNorm2d": lambda: nets.UNet(3, 2, base_width=4, depth=2, norm_layer=nets.BatchNorm2d),
    "SelfAttention2d": lambda: nets.SelfAttention2d(8, norm_layer=nets.BatchNorm2d),
    "DualPoolHead": lambda: nets.DualPoolHead(8, 3),
}


@pytest.mark.parametrize("build", MODELS.values(), ids=list(MODELS))
def test_only_the_outermost_module_validates(build):
    model = build()
    checking = [name for name, m in model.named_modules() if isinstance(m, ChecksInput) and m.check_input]
    assert checking == [""], f"nested modules still validate: {checking[1:]}"
    assert sum(isinstance(m, ChecksInput) for m in model.modules()) > 1  # there were nested ones


def test_a_tensor_is_validated_once_per_forward(monkeypatch):
    calls = []

    def counting(x, *args, **kwargs):
        calls.append(kwargs.get("owner"))
        return check_image_batch(x, *args, **kwargs)

    for module in (nets.se, nets.resnet):
        monkeypatch.setattr(module, "check_image_batch", counting)
    model = nets.se_resnet18(num_classes=3).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert calls == ["ResNet"]                        # not once more in each of the 8 SE blocks
    calls.clear()
    se = nets.SqueezeExcitation(16)                   # on its own, SE checks its input
    se(torch.randn(1, 16, 4, 4))
    assert calls == ["SqueezeExcitation"]
    with pytest.raises(ValueError, match="16 input channels, got 8"):
        se(torch.randn(1, 8, 4, 4))
