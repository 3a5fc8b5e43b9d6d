"""nets.measure's latency helpers, on modules cheap enough to time in a test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nets
from nets.measure import Latency, LatencyComparison, compare_latency, latency


def _conv(kernel: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(32, 32, kernel, padding=kernel // 2).eval()


X = torch.randn(1, 32, 32, 32)
# One thread: with two threads on a machine whose cores are busy, every op waits for the
# descheduled second thread (tens of ms per conv here) and the timings say nothing about
# the ops. The chapters time with one thread for the same reason.


def test_latency_measures_a_module_and_records_threads():
    result = latency(_conv(3), X, min_run_time=0.05, threads=1)
    assert isinstance(result, Latency)
    assert result.threads == 1 and result.label == "Conv2d"
    assert result.median > 0 and result.iqr >= 0 and len(result.times) >= 1
    assert result.number_per_run >= 1
    assert "ms per call" in str(result) and "1 thread)" in str(result)
    assert torch.get_num_threads() >= 1                     # the thread count is put back


def test_a_7x7_conv_takes_longer_than_a_1x1_conv():
    """49 times the MACs: the order must come out right even on a busy machine."""
    result = compare_latency({"1x1": _conv(1), "7x7": _conv(7)}, X, rounds=5, min_run_time=0.02, threads=1)
    assert isinstance(result, LatencyComparison)
    assert result.ratio["1x1"] == 1.0
    assert result.ratio["7x7"] > 3
    assert result.median["7x7"] > result.median["1x1"]
    assert all(len(t) == 5 for t in result.times.values())


def test_a_model_against_itself_has_ratio_one():
    model = _conv(3)
    result = compare_latency({"a": model, "b": model}, X, rounds=9, min_run_time=0.02, baseline="b", threads=1)
    assert result.baseline == "b" and result.ratio["b"] == 1.0
    assert 0.8 < result.ratio["a"] < 1.25
    assert "× b" in result.table().splitlines()[0]


def test_callables_without_inputs_and_gradients():
    w = torch.randn(64, 64, requires_grad=True)
    result = compare_latency({"matmul": lambda: (w @ w).sum().backward()}, rounds=2,
                             min_run_time=0.01, grad=True)
    assert result.median["matmul"] > 0 and w.grad is not None
    # without grad=True the call runs under no_grad: nothing to backpropagate
    with pytest.raises(RuntimeError):
        latency(lambda: (w @ w).sum().backward(), min_run_time=0.01, warmup=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        compare_latency({})
    with pytest.raises(ValueError, match="baseline"):
        compare_latency({"a": _conv(1)}, X, baseline="b")
    with pytest.raises(ValueError, match="threads"):
        latency(_conv(1), X, threads=0)


def test_exported():
    assert nets.latency is latency and nets.compare_latency is compare_latency
