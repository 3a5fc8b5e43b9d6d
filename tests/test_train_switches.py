"""nets.fit's speed switches on the CPU: mixed precision, channels-last, torch.compile."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nets

CPU = torch.device("cpu")


def conv_run(**switches):
    generator = nets.seed_everything(0)
    data = nets.Shapes(192, image_size=16, seed=0)
    model = nets.cifar_resnet(8, width=8)
    history = nets.fit(model, DataLoader(data, batch_size=32, shuffle=True, generator=generator),
                       epochs=1, lr=0.1, quiet=True, device=CPU, **switches)
    return history, model


@pytest.fixture(scope="module")
def float32_run():
    return conv_run()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_float32_weights_close_to_float32(float32_run, amp):
    reference, _ = float32_run
    history, model = conv_run(amp=amp)
    assert all(p.dtype == torch.float32 for p in model.parameters())   # autocast, not a cast
    first = history["loss"][0]
    assert first == pytest.approx(reference["loss"][0], abs=0.02)      # same net, lower precision
    assert first != reference["loss"][0]                                # ... and it did run in it
    assert all(torch.isfinite(torch.tensor(history["loss"])))


def test_fp16_uses_a_grad_scaler(monkeypatch):
    made = []
    real = torch.amp.GradScaler

    def spy(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.amp, "GradScaler", spy)
    conv_run(amp="fp16")
    assert made == [("cpu",)]
    conv_run(amp="bf16")
    assert len(made) == 1                                                # bf16 needs none


def test_channels_last_keeps_the_numbers(float32_run):
    reference, _ = float32_run
    history, model = conv_run(channels_last=True)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert history["loss"][:3] == pytest.approx(reference["loss"][:3], rel=1e-4)


def test_compile_gives_the_eager_losses(monkeypatch):
    compiled = []
    real_compile = torch.compile

    def spy(model, *args, **kwargs):          # equal losses alone would not show it compiled
        compiled.append(model)
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))

    def run(**switches):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        return nets.fit(model, DataLoader(TensorDataset(x, y), batch_size=16), epochs=1, lr=0.1,
                        quiet=True, device=CPU, **switches)

    assert run(compile=True)["loss"] == pytest.approx(run()["loss"], rel=1e-5)
    assert len(compiled) == 1


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="amp must be None, 'bf16' or 'fp16'"):
        nets.fit(nn.Linear(2, 2), [], amp="fp8", device=CPU)
