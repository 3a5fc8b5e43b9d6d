"""The flat public API the chapters import: every name the book promises is `nets.<name>`."""

import pytest
import torch

import nets

PROMISED = """
device seed_everything scale scaled fit evaluate History plot_history show_images heatmap
Shapes make_shapes digits cifar10 count_params count_macs
resnet18 resnet34 resnet50 resnet101 resnet152 resnext50_32x4d resnext101_32x8d wide_resnet50_2
ResNet BasicBlock Bottleneck cifar_resnet cifar_plain
BatchNorm2d
SqueezeExcitation se_resnet18 se_resnet34 se_resnet50 se_resnet101 se_resnet152
ChannelAttention SpatialAttention CBAM cbam_resnet18 cbam_resnet34 cbam_resnet50 cbam_resnet101 cbam_resnet152
GlobalPool2d DualPoolHead
mobilenet_v1 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small
shufflenet_v1 shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0 channel_shuffle
UNet scaled_dot_product_attention MultiHeadAttention SelfAttention2d
""".split()


@pytest.mark.parametrize("name", PROMISED)
def test_name_is_exported(name):
    assert callable(getattr(nets, name, None)), f"nets.{name} is missing"


# Every public builder, with the positional arguments that define its architecture (only the
# CIFAR nets have one: the depth). Options are keyword-only, as in torchvision.
BUILDERS = {
    **{name: () for name in """
        resnet18 resnet34 resnet50 resnet101 resnet152 resnext50_32x4d resnext101_32x8d
        resnext101_64x4d wide_resnet50_2 wide_resnet101_2
        se_resnet18 se_resnet34 se_resnet50 se_resnet101 se_resnet152
        cbam_resnet18 cbam_resnet34 cbam_resnet50 cbam_resnet101 cbam_resnet152
        mobilenet_v1 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small
        shufflenet_v1 shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0
        """.split()},
    "cifar_resnet": (20,),
    "cifar_plain": (20,),
}
# torchvision's builders take these keywords; ours do too where torchvision has the model.
TORCHVISION_KEYWORDS = ("weights", "progress", "num_classes")


def test_every_public_builder_is_listed():
    """A builder added to nets without being listed here would escape the checks below.
    Builders are the lower-case functions of nets that return one of nets' model classes."""
    import inspect
    import typing

    public = set()
    for name in dir(nets):
        obj = getattr(nets, name)
        if name[0].islower() and inspect.isfunction(obj):
            returns = typing.get_type_hints(obj).get("return")
            if (inspect.isclass(returns) and issubclass(returns, torch.nn.Module)
                    and returns.__module__.startswith("nets.")):   # a nets model, not a torch layer
                public.add(name)
    assert public == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_options_are_keyword_only(name):
    """`mobilenet_v3_large(0.5)` must not quietly pass 0.5 as the weights (or the width)."""
    builder = getattr(nets, name)
    with pytest.raises(TypeError, match="positional"):
        with torch.device("meta"):
            builder(*BUILDERS[name], 0.5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_keywords_follow_torchvision(name):
    import inspect

    import torchvision.models as tvm

    params = inspect.signature(getattr(nets, name)).parameters
    positional = [p for p in params.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert len(positional) == len(BUILDERS[name])
    assert "num_classes" in params and params["num_classes"].kind is inspect.Parameter.KEYWORD_ONLY
    if hasattr(tvm, name):  # torchvision has the model: same weights/progress keywords
        tv = inspect.signature(getattr(tvm, name)).parameters
        for keyword in TORCHVISION_KEYWORDS[:2]:
            assert keyword in tv and params[keyword].default == tv[keyword].default
