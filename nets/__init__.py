"""nets — the models, data and training helpers of *Neural Network Notes*.

Everything a chapter needs is importable from here::

    import nets
    dev = nets.device()
    model = nets.resnet50(num_classes=10)

One module per idea: ``resnet``, ``cifar_resnet``, ``batchnorm``, ``se``, ``cbam``,
``pooling``, ``mobilenet``, ``shufflenet``, ``unet`` (with ``segmentation``: its metrics,
losses and tiled prediction), ``attention``, ``visualize`` (hooks, feature maps, CAM); plus
the helpers every chapter uses (``runtime``, ``data``, ``train``, ``plot``, ``measure``) and
the paths to paper scale (``recipes``, ``distributed``, and the runner ``python -m nets.run``).
"""

from . import data, distributed, recipes, segmentation, visualize
from .attention import (AdditiveScore, MultiHeadAttention, SelfAttention2d, attention_scores, causal_mask,
                        scaled_dot_product_attention, sinusoidal_position_encoding)
from .batchnorm import BatchNorm2d, fold_bn, fold_bn_eval
from .cbam import CBAM, ChannelAttention, SpatialAttention, cbam_resnet18, cbam_resnet34, cbam_resnet50, cbam_resnet101, cbam_resnet152
from .cifar_resnet import CifarResNet, cifar_plain, cifar_resnet
from .data import Shapes, cifar10, digits, make_shapes
from .measure import compare_latency, count_macs, count_params, latency
from .mobilenet import mobilenet_v1, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from .plot import heatmap, plot_history, show_images, strip_plot
from .pooling import DualPoolHead, GlobalPool2d
from .resnet import (BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152,
                     resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2)
from .runtime import assert_at_budget, at_default_scale, device, scale, scaled, seed_everything
from .se import SqueezeExcitation, se_resnet18, se_resnet34, se_resnet50, se_resnet101, se_resnet152
from .shufflenet import (channel_shuffle, shufflenet_v1, shufflenet_v2_x0_5, shufflenet_v2_x1_0,
                         shufflenet_v2_x1_5, shufflenet_v2_x2_0)
from .train import History, evaluate, fit
from .unet import AttentionGate, UNet

__version__ = "0.1.0"
