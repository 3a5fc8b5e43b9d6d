import random

import numpy as np
import pytest
import torch

import nets
from nets import runtime


def test_device_defaults_to_what_the_machine_has(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if runtime._mps_available() else "cpu")
    assert nets.device().type == expected


def test_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert nets.device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert nets.device().type == "mps"
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert nets.device().type == "cpu"


def test_device_environment_override(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert nets.device() == torch.device("cpu")


@pytest.mark.parametrize("value, message", [("gpu0", "not a torch device"), ("cuda", "CUDA is not available")])
def test_device_override_errors(monkeypatch, value, message):
    monkeypatch.setenv(runtime.DEVICE_ENV, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=message):
        nets.device()


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    gen = nets.seed_everything(123)
    first, first_gen = draw(), torch.rand(2, generator=gen)
    gen = nets.seed_everything(123)
    second, second_gen = draw(), torch.rand(2, generator=gen)
    assert first[:2] == second[:2]
    assert torch.equal(first[2], second[2]) and torch.equal(first_gen, second_gen)
    nets.seed_everything(124)
    assert not torch.equal(torch.rand(3), second[2])


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="non-negative int"):
        nets.seed_everything(seed)


def test_scale_knob(monkeypatch):
    monkeypatch.delenv(runtime.SCALE_ENV, raising=False)
    assert nets.scale() == 1.0 and nets.scaled(600) == 600
    monkeypatch.setenv(runtime.SCALE_ENV, "20")
    assert nets.scaled(600) == 12_000
    monkeypatch.setenv(runtime.SCALE_ENV, "0.001")
    assert nets.scaled(600) == 1 and nets.scaled(600, minimum=10) == 10
    monkeypatch.setenv(runtime.SCALE_ENV, "0.5")
    assert nets.scaled(3) == 2  # round half to even: 1.5 -> 2


@pytest.mark.parametrize("value", ["big", "0", "-2", "nan", "inf"])
def test_scale_knob_rejects_nonsense(monkeypatch, value):
    monkeypatch.setenv(runtime.SCALE_ENV, value)
    with pytest.raises(ValueError, match=runtime.SCALE_ENV):
        nets.scale()


def test_scaled_rejects_negative_counts():
    with pytest.raises(ValueError):
        nets.scaled(-1)


def test_budget_claims_are_checked_only_at_scale_one(monkeypatch):
    monkeypatch.delenv("NETS_SCALE", raising=False)
    assert nets.at_default_scale()
    assert nets.assert_at_budget(True, "holds") is True
    with pytest.raises(AssertionError, match="NETS_SCALE=1 budget failed: the shallow net is fastest"):
        nets.assert_at_budget(False, "the shallow net is fastest")
    monkeypatch.setenv("NETS_SCALE", "2")
    assert not nets.at_default_scale()
    assert nets.assert_at_budget(False, "not checked at scale 2") is False
