"""The flat public API the chapters import: every name the book promises is `nets.<name>`."""

import pytest

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
