"""python -m nets.run: the book's degradation experiment at any scale, alone or under torchrun."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nets import recipes, run

ROOT = Path(__file__).resolve().parents[1]


def env():
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "NETS_DIST_TIMEOUT": "60"}
    for key in ("WORLD_SIZE", "RANK", "NETS_DEVICE", "NETS_SCALE"):
        e.pop(key, None)
    return e


def records(out: Path) -> list:
    return [json.loads(line) for line in (out / "degradation.jsonl").read_text().splitlines()]


def test_chapter_recipe_runs_and_writes_history_csv_and_plot(tmp_path):
    assert run.main(["degradation", "--nets", "plain-8,ResNet-8", "--seeds", "0,1", "--steps", "6",
                     "--batch-size", "32", "--out", str(tmp_path), "--quiet"]) == 0
    rows = records(tmp_path)
    assert [(r["net"], r["seed"]) for r in rows] == [("plain-8", 0), ("ResNet-8", 0),
                                                     ("plain-8", 1), ("ResNet-8", 1)]
    assert all(r["steps"] == 6 and r["width"] == 8 and r["processes"] == 1 for r in rows)
    assert all(0 <= r["train_error"] <= 1 and 0 <= r["val_error"] <= 1 for r in rows)
    csv_lines = (tmp_path / "degradation_steps.csv").read_text().splitlines()
    assert csv_lines[0] == "net,seed,step,loss,train_error" and len(csv_lines) == 1 + 4 * 6
    assert (tmp_path / "degradation.png").stat().st_size > 10_000


def test_chapter_rates_and_overrides():
    names = ["plain-26", "ResNet-26", "ResNet-56"]
    assert run._parse_rates(None, names, "chapter") == {"plain-26": 0.1, "ResNet-26": 0.4, "ResNet-56": 0.1}
    assert run._parse_rates("ResNet-56=0.8", names, "chapter")["ResNet-56"] == 0.8
    assert set(run._parse_rates("0.05", names, "paper").values()) == {0.05}
    with pytest.raises(ValueError, match="not in --nets"):
        run._parse_rates("plain-8=0.1", names, "chapter")


def test_the_paper_recipe_is_the_papers_schedule():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    marks = [round(f * 64_000) for f in (0.5, 0.75)]
    assert marks == [32_000, 48_000]
    net = recipes.degradation_net("ResNet-56", width=16)
    assert sum(p.numel() for p in net.parameters()) == 853_018        # the paper's 0.85M
    with pytest.raises(ValueError, match="plain-<depth>"):
        recipes.degradation_net("resnet56")
    del optimizer


def test_bad_settings_exit_with_a_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nets.run", "degradation", "--nets", "plain-9",
                             "--out", str(tmp_path)], env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "depth" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nets.run", "degradation", "--device", "cuda",
                             "--out", str(tmp_path)], env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "NETS_DEVICE='cuda' but CUDA is not available here" in result.stderr
    assert "Traceback" not in result.stderr


def test_under_torchrun_two_processes_share_the_global_batch(tmp_path):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", "-m", "nets.run", "degradation", "--nets", "ResNet-8",
                             "--steps", "4", "--batch-size", "32", "--out", str(tmp_path), "--quiet"],
                            env=env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = records(tmp_path)
    # 32 images, a global batch of 32 (16 per process): one step per epoch, four epochs
    assert row["processes"] == 2 and row["batch_size"] == 32 and len(row["epochs"]) == 4
    assert result.stdout.count("wrote ") == 1                      # rank 0 writes, once


def test_paper_recipe_on_a_local_cifar10_stand_in(tmp_path, monkeypatch):
    """The CIFAR-10 path, offline: a tiny stand-in in CIFAR-10's on-disk format."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as cifar_module

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
                         "labels": list(range(8))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar_module, "check_integrity", lambda *args, **kwargs: True)
    monkeypatch.setattr(tvd.CIFAR10, "download", lambda self: None)      # never the network here
    out = tmp_path / "out"
    assert run.main(["degradation", "--recipe", "paper", "--data", "cifar10", "--data-root",
                     str(tmp_path / "data"), "--nets", "plain-8", "--steps", "3", "--batch-size", "8",
                     "--out", str(out), "--quiet"]) == 0
    [row] = records(out)
    assert row["recipe"] == "paper" and row["data"] == "cifar10" and row["width"] == 16


def test_gpu_check_script_is_valid_bash_and_says_when_there_is_no_gpu():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: run the script itself")
    result = subprocess.run(["bash", str(script)], env={**env(), "PY": sys.executable},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no CUDA device here" in result.stderr


def test_chapter_rates_are_what_chapter_1s_stored_sweep_chose():
    """The runner's default rates are the sweep's choice (lowest mean final training error
    over seeds 0-2, among the rates run with all three), as chapter 1 computes it."""
    sweep_file = ROOT / "benchmarks" / "experiments" / "results" / "ch1_degradation_sweep.jsonl"
    sweep = [json.loads(line) for line in sweep_file.read_text().splitlines()]
    for net, rate in run.CHAPTER_RATES.items():
        by_rate = {}
        for r in sweep:
            if r["net"] == net and r["seed"] in (0, 1, 2):
                by_rate.setdefault(r["lr"], []).append(r["train_error"])
        full = {lr: errors for lr, errors in by_rate.items() if len(errors) == 3}
        assert min(full, key=lambda lr: sum(full[lr])) == rate, net
