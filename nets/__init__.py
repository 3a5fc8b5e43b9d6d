"""nets — the models, data and training helpers of *Neural Network Notes*.

Everything a chapter needs is importable from here::

    import nets
    dev = nets.device()
    model = nets.resnet50(num_classes=10)
"""

from . import data
from .data import Shapes, cifar10, digits, make_shapes
from .measure import count_macs, count_params
from .plot import heatmap, plot_history, show_images
from .runtime import device, scale, scaled, seed_everything
from .train import History, evaluate, fit

__version__ = "0.1.0"
