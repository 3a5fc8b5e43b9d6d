import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import nets  # noqa: E402
from nets.plot import smooth  # noqa: E402
from nets.train import History  # noqa: E402


def _history(values):
    h = History("classification")
    h.epochs = [{"epoch": i + 1, "train_loss": v, "train_metric": 1 - v, "seconds": 1.0} for i, v in enumerate(values)]
    h.steps = [{"step": i + 1, "loss": v, "metric": 1 - v} for i, v in enumerate(values)]
    return h


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth([1, 2], 1), [1, 2])


def test_plot_history_draws_one_line_per_run():
    ax = nets.plot_history({"a": _history([1, 0.5, 0.2]), "b": _history([0.9, 0.8, 0.7])}, "metric", error=True)
    assert len(ax.lines) == 2 and ax.get_xlabel() == "step"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1, 0.5, 0.2])
    ax = nets.plot_history(_history([1, 0.5]), "train_loss")
    assert ax.get_xlabel() == "epoch" and ax.get_legend() is None
    plt.close("all")


def test_show_images_with_labels_and_masks():
    images, labels, masks = nets.make_shapes(10, image_size=16)
    fig = nets.show_images(images, labels, nets.data.CLASS_NAMES, masks=masks, ncols=5)
    axes = fig.axes
    assert len(axes) == 4 * 5  # two image rows, two mask rows
    assert axes[0].get_title() == nets.data.CLASS_NAMES[int(labels[0])]
    fig = nets.show_images(torch.rand(3, 1, 8, 8))  # grey images, no labels
    assert len(fig.axes) == 3
    with pytest.raises(ValueError):
        nets.show_images(torch.rand(0, 3, 8, 8))
    plt.close("all")


def test_heatmap_writes_values():
    ax = nets.heatmap(np.array([[0.1, 0.9], [0.5, 0.25]]), ["r1", "r2"], ["c1", "c2"])
    assert [t.get_text() for t in ax.texts] == ["0.10", "0.90", "0.50", "0.25"]
    with pytest.raises(ValueError, match="2-d"):
        nets.heatmap(np.zeros(3))
    plt.close("all")
