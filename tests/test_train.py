import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nets
from nets.train import accuracy, confusion_matrix, mean_iou


def _separable(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def test_fit_learns_and_records_history(capsys):
    nets.seed_everything(0)
    model = nn.Linear(2, 2)
    loader = DataLoader(_separable(), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(_separable(128, seed=1), batch_size=64)
    history = nets.fit(model, loader, val, epochs=3, lr=0.1, quiet=True, device=torch.device("cpu"))
    assert capsys.readouterr().err == ""  # quiet means no progress bar
    assert len(history.epochs) == 3 and len(history.steps) == 3 * 8
    assert history["val_metric"][-1] > 0.95
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert set(history.epochs[0]) == {"epoch", "train_loss", "train_metric", "val_loss", "val_metric", "seconds"}
    assert history.seconds > 0 and not history.diverged
    assert history.metric_name == "accuracy"
    assert history.last("loss", 8) == pytest.approx(sum(history["loss"][-8:]) / 8)
    with pytest.raises(KeyError, match="known keys"):
        history["val_accuracy"]


def test_progress_bar_is_shown_unless_quiet(capsys):
    loader = DataLoader(_separable(64), batch_size=32)
    nets.fit(nn.Linear(2, 2), loader, epochs=1, quiet=False, device=torch.device("cpu"), desc="demo")
    assert "demo" in capsys.readouterr().err


def test_max_steps_cuts_an_epoch():
    loader = DataLoader(_separable(), batch_size=32)
    history = nets.fit(nn.Linear(2, 2), loader, epochs=5, max_steps=11, quiet=True, device=torch.device("cpu"))
    assert len(history.steps) == 11 and len(history.epochs) == 2


def test_divergence_is_recorded_not_raised():
    x = torch.randn(64, 2) * 1e3
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 2))
    history = nets.fit(model, loader, epochs=20, lr=1e4, quiet=True, device=torch.device("cpu"))
    assert history.diverged and history.steps[-1]["loss"] == math.inf
    assert len(history.steps) == history.diverged_at


def test_scheduler_is_stepped_every_step():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    nets.fit(model, DataLoader(_separable(64), batch_size=16), epochs=1, optimizer=opt,
             scheduler=sched, quiet=True, device=torch.device("cpu"))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 5)


def test_segmentation_task_uses_mean_iou():
    # a 1x1 conv can learn "pixel bright -> class 1"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 8, 8, generator=g)
    y = (x[:, 0] > 0.5).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Conv2d(1, 2, 1)
    history = nets.fit(model, loader, loader, epochs=15, lr=0.5, task="segmentation", quiet=True,
                       device=torch.device("cpu"))
    assert history.metric_name == "mean IoU"
    assert history["val_metric"][-1] > 0.8


def test_metrics_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    cm = confusion_matrix(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 1, 0, 1]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    # IoU class 0: 1 / (1 + 1) = 0.5; class 1: 2 / (2 + 1) = 2/3; class 2 absent -> skipped
    assert mean_iou(cm) == pytest.approx((0.5 + 2 / 3) / 2)


def test_evaluate_restores_mode_and_checks_task():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    result = nets.evaluate(model, DataLoader(_separable(32), batch_size=8))
    assert model.training and set(result) == {"loss", "metric"}
    with pytest.raises(ValueError, match="task must be one of"):
        nets.evaluate(model, [], task="detection")
    with pytest.raises(ValueError, match="epochs"):
        nets.fit(model, [], epochs=0)
