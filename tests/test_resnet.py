"""nets.resnet against torchvision: same state_dict, same outputs, same size and cost."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import get_model_weights

import nets.resnet as R
from nets.measure import count_macs, count_params
from twins import assert_pretrained_weights_load_offline, assert_same_state_dict_layout, on_meta

# The torchvision-equivalent models: name -> (params, GMACs at 224×224) from REFERENCE.md.
REFERENCE = {
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "resnext50_32x4d": (25_028_904, 4.23),
    "wide_resnet50_2": (68_883_240, 11.398),
}
TORCHVISION_EQUIVALENT = list(REFERENCE) + ["resnext101_32x8d"]
# Built too, but only checked structurally and against torchvision's weight metadata.
EXTRA = ["resnext101_64x4d", "wide_resnet101_2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def ours_from(tv_model: nn.Module, name: str, **kwargs) -> nn.Module:
    """Our model holding exactly ``tv_model``'s weights (strict load). Built on the meta
    device and materialised empty: the strict load overwrites every parameter and buffer,
    so initialising first would only cost time."""
    model = on_meta(getattr(R, name), **kwargs).to_empty(device="cpu")
    model.load_state_dict(tv_model.state_dict(), strict=True)
    return model


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("num_classes", [1000, 10])
@pytest.mark.parametrize("name", TORCHVISION_EQUIVALENT + EXTRA)
def test_state_dict_keys_and_shapes_match_torchvision(name, num_classes):
    ours = on_meta(getattr(R, name), num_classes=num_classes)
    theirs = on_meta(getattr(tvm, name), num_classes=num_classes)
    assert_same_state_dict_layout(ours, theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.fc.out_features == num_classes


@pytest.mark.parametrize("name", list(REFERENCE))
def test_params_and_macs_match_reference(name):
    params, gmacs = REFERENCE[name]
    model = on_meta(getattr(R, name))
    assert count_params(model) == params
    # FlopCounterMode works from shapes alone, so the meta model gives the 224×224 count.
    assert count_macs(model, (1, 3, 224, 224)) / 1e9 == pytest.approx(gmacs, rel=0.01)


@pytest.mark.parametrize("name", ["resnext101_32x8d"] + EXTRA)
def test_params_and_macs_match_torchvision_metadata(name):
    meta = get_model_weights(name).DEFAULT.meta
    model = on_meta(getattr(R, name))
    assert count_params(model) == meta["num_params"]
    assert count_macs(model, (1, 3, 224, 224)) / 1e9 == pytest.approx(meta["_ops"], rel=0.01)


@pytest.mark.parametrize("name", TORCHVISION_EQUIVALENT)
def test_outputs_equal_torchvision(name):
    """Eval and train mode, at 224×224 (batch 1) and 97×131 (batch 2, not multiples of 32).
    Each model is built once; the biggest take a few seconds."""
    torch.manual_seed(0)
    theirs = getattr(tvm, name)()
    ours = ours_from(theirs, name)
    inputs = [torch.randn(1, 3, 224, 224), torch.randn(2, 3, 97, 131)]
    with torch.no_grad():
        for train in (False, True):
            ours.train(train)
            theirs.train(train)
            for x in inputs:
                out = ours(x)
                assert out.shape == (x.shape[0], 1000)
                assert_same(out, theirs(x))
    # train mode updated the BN running statistics identically
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_outputs_equal_torchvision_other_num_classes(name):
    torch.manual_seed(0)
    theirs = getattr(tvm, name)(num_classes=7)
    ours = ours_from(theirs, name, num_classes=7)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        for train in (False, True):
            ours.train(train)
            theirs.train(train)
            out = ours(x)
            assert out.shape == (2, 7)
            assert_same(out, theirs(x))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_same_seed_same_initialisation_as_torchvision(name, zero_init_residual):
    torch.manual_seed(0)
    ours = getattr(R, name)(zero_init_residual=zero_init_residual)
    torch.manual_seed(0)
    theirs = getattr(tvm, name)(zero_init_residual=zero_init_residual)
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_zero_init_residual_zeroes_the_last_norm_of_every_block():
    for builder, last in ((R.resnet18, "bn2"), (R.resnet50, "bn3")):
        model = builder(zero_init_residual=True)
        blocks = [m for m in model.modules() if isinstance(m, (R.BasicBlock, R.Bottleneck))]
        assert len(blocks) == (8 if builder is R.resnet18 else 16)
        for block in blocks:
            assert torch.count_nonzero(getattr(block, last).weight) == 0
            assert torch.all(block.bn1.weight == 1)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("size", [(1, 1), (17, 23), (33, 2)])
def test_tiny_inputs_in_eval_mode(name, size):
    torch.manual_seed(0)
    theirs = getattr(tvm, name)().eval()
    ours = ours_from(theirs, name).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        out = ours(x)
        assert out.shape == (1, 1000)
        assert_same(out, theirs(x))


def test_forward_features_is_the_backbone_before_pooling(capsys):
    torch.manual_seed(0)
    for builder, channels in ((R.resnet18, 512), (R.resnet50, 2048)):
        model = builder(num_classes=5).eval()
        x = torch.randn(2, 3, 97, 131)
        with torch.no_grad():
            features = model.forward_features(x)
            assert features.shape == (2, channels, 4, 5)       # ceil(97/32), ceil(131/32)
            assert model.num_features == channels
            assert_same(model.fc(features.mean(dim=(2, 3))), model(x))
    assert capsys.readouterr().out == ""                        # no print in forward


def test_bad_input_raises_value_error():
    model = R.resnet18()
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        model.forward_features(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="5-d"):
        model(torch.randn(1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="2-d"):
        model(torch.randn(1, 3))
    gray = R.resnet18(in_channels=1, num_classes=2).eval()
    assert gray.conv1.in_channels == 1
    with torch.no_grad():
        assert gray(torch.randn(1, 1, 40, 40)).shape == (1, 2)
    with pytest.raises(ValueError, match="1 input channels"):
        gray(torch.randn(1, 3, 40, 40))


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="stem"):
        R.ResNet(R.BasicBlock, [2, 2, 2, 2], stem="wide")
    with pytest.raises(ValueError, match="4 stage depths"):
        R.ResNet(R.BasicBlock, [2, 2, 2])
    with pytest.raises(ValueError, match="Bottleneck"):
        R.BasicBlock(64, 64, groups=32, base_width=4)
    with pytest.raises(ValueError, match="plain block"):
        R.BasicBlock(64, 128, 2, downsample=nn.Conv2d(64, 128, 1, 2), shortcut=False)


def test_deep_stem():
    torch.manual_seed(0)
    model = R.resnet50(stem="deep").eval()
    kinds = [type(m) for m in model.conv1]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2 + [nn.Conv2d]
    assert [model.conv1[i].stride for i in (0, 3, 6)] == [(2, 2), (1, 1), (1, 1)]
    assert [model.conv1[i].kernel_size for i in (0, 3, 6)] == [(3, 3)] * 3
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        assert model.conv1(x).shape == (1, 64, 49, 66)          # 2·stem_width, ceil(H/2)
        assert model.forward_features(x).shape == (1, 2048, 4, 5)
        assert model(x).shape == (1, 1000)
    # 7×7×3×64 stem conv replaced by 3×3 convs 3→32→32→64 plus two 32-channel BNs
    assert count_params(model) == 25_557_032 - 7 * 7 * 3 * 64 + 9 * (3 * 32 + 32 * 32 + 32 * 64) + 2 * 2 * 32
    # the rest of the net is unchanged: torchvision's weights fit everything but conv1
    missing, unexpected = model.load_state_dict(tvm.resnet50().state_dict(), strict=False)
    assert {k.split(".")[0] for k in missing} == {"conv1"}
    assert unexpected == ["conv1.weight"]

    narrow = R.resnet18(stem="deep", stem_width=16, num_classes=3).eval()
    assert narrow.bn1.num_features == 32
    assert narrow.layer1[0].downsample is not None               # 32 -> 64 channels
    with torch.no_grad():
        assert narrow.conv1(torch.randn(2, 3, 17, 23)).shape == (2, 32, 9, 12)
        assert narrow(torch.randn(2, 3, 17, 23)).shape == (2, 3)


class ZeroAttention(nn.Module):
    """Stand-in attention that records what it sees and outputs zeros."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.seen = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels
        self.seen = x.clone()
        return torch.zeros_like(x)


@pytest.mark.parametrize("builder, last_norm", [(R.resnet18, "bn2"), (R.resnext50_32x4d, "bn3")])
def test_attention_slot_sits_after_last_norm_before_addition(builder, last_norm):
    torch.manual_seed(0)
    built_with = []

    def attn_layer(channels: int) -> nn.Module:
        built_with.append(channels)
        return ZeroAttention(channels)

    model = builder(attn_layer=attn_layer).eval()
    blocks = [m for m in model.modules() if isinstance(m, (R.BasicBlock, R.Bottleneck))]
    assert len(built_with) == len(blocks)
    expansion = blocks[0].expansion
    assert built_with[0] == 64 * expansion and built_with[-1] == 512 * expansion

    norm_outputs, records = {}, []

    def save_norm_output(block):
        return lambda norm, args, out: norm_outputs.__setitem__(block, out.clone())

    def save_block(block, args, output):
        x, = args
        shortcut = x if block.downsample is None else block.downsample(x)
        records.append((block, shortcut, output))

    handles = []
    for block in blocks:
        handles.append(getattr(block, last_norm).register_forward_hook(save_norm_output(block)))
        handles.append(block.register_forward_hook(save_block))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 48))
    for h in handles:
        h.remove()

    assert len(records) == len(blocks)
    for block, shortcut, output in records:
        # the attention got the last norm's output ...
        assert_same(block.attn.seen, norm_outputs[block])
        # ... and, zeroing it, left only the shortcut: relu(0 + shortcut(x))
        assert_same(output, torch.relu(shortcut))


def test_attention_with_parameters_keeps_torchvision_keys():
    class Gate(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.fc = nn.Conv2d(channels, channels, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))

    model = on_meta(R.resnet18, attn_layer=Gate)
    missing, unexpected = model.load_state_dict(on_meta(tvm.resnet18).state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(".attn.fc." in k for k in missing)
    assert len(missing) == 2 * 8                                   # weight and bias per block
    assert all(isinstance(m, nn.Identity) for m in
               (b.attn for b in R.resnet18().modules() if isinstance(b, R.BasicBlock)))


def test_norm_layer_is_injected():
    model = R.resnet18(norm_layer=lambda c: nn.GroupNorm(8, c), num_classes=4)
    norms = [m for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    # the projection shortcuts use it too
    assert isinstance(model.layer2[0].downsample[1], nn.GroupNorm)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 4)


@pytest.mark.parametrize("name, weights, entry", [
    ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", tvm.ResNet18_Weights.IMAGENET1K_V1),
    ("resnet50", "IMAGENET1K_V2", tvm.ResNet50_Weights.IMAGENET1K_V2),  # short name
    ("resnet50", "DEFAULT", tvm.ResNet50_Weights.IMAGENET1K_V2),        # torchvision's alias
    ("resnet34", tvm.ResNet34_Weights.IMAGENET1K_V1, tvm.ResNet34_Weights.IMAGENET1K_V1),  # a member
])
def test_pretrained_weights_load_offline_from_the_hub_cache(offline_hub, name, weights, entry):
    assert_pretrained_weights_load_offline(offline_hub, getattr(R, name), getattr(tvm, name), weights, entry)


def test_pretrained_weights_offline_without_checkpoint(offline_hub):
    with pytest.raises(RuntimeError, match="network"):
        R.resnet18(weights="DEFAULT")


def test_pretrained_weights_need_their_number_of_classes():
    with pytest.raises(ValueError, match="1000 classes"):
        R.resnet18(weights="ResNet18_Weights.IMAGENET1K_V1", num_classes=10)
    with pytest.raises(ValueError, match="not for resnet18"):
        R.resnet18(weights="ResNet50_Weights.IMAGENET1K_V1")
    with pytest.raises(ValueError, match="ResNet18_Weights has DEFAULT, IMAGENET1K_V1"):
        R.resnet18(weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="member of ResNet18_Weights"):
        R.resnet18(weights=tvm.ResNet50_Weights.IMAGENET1K_V1)
