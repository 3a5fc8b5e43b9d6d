"""nets.plot.strip_plot: the per-seed spreads of chapter 1."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nets.plot import strip_plot  # noqa: E402


def test_strip_plot_draws_every_value_and_the_mean():
    groups = {"a": [0.1, 0.2, 0.3], "b": [0.5]}
    ax = strip_plot(groups, ylabel="error", chance=0.9)
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(dots) == 2
    np.testing.assert_allclose(dots[0].get_ydata(), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(dots[0].get_xdata(), [-0.08, 0, 0.08])
    np.testing.assert_allclose(dots[1].get_xdata(), [1])
    means = [segments[0][0][1] for segments in (c.get_segments() for c in ax.collections)]
    np.testing.assert_allclose(means, [0.2, 0.5])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert ax.get_ylabel() == "error"


def test_strip_plot_rejects_empty_input():
    with pytest.raises(ValueError):
        strip_plot({})
    with pytest.raises(ValueError):
        strip_plot({"a": []})
