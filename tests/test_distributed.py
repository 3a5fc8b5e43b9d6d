"""nets.fit under torchrun: 2 CPU processes with gloo, against one process fed the same global batches."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import nets
from nets import distributed

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def run_worker(out: Path, *args: str, processes: int = 1, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "NETS_DIST_TIMEOUT": "60"}
    env.pop("WORLD_SIZE", None)
    if processes == 1:
        command = [sys.executable, str(WORKER), str(out), *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", str(WORKER), str(out), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    for out, processes in ((one, 1), (two, 2)):
        result = run_worker(out, processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(p) for p in (one / "rank0.pt", two / "rank0.pt", two / "rank1.pt")]


def test_two_processes_reach_the_weights_of_one_fed_the_same_global_batches(one_and_two):
    single, rank0, _ = one_and_two
    assert len(single["history"]["steps"]) == len(rank0["history"]["steps"]) == 16  # 2 epochs × 256/32
    for key, value in single["state"].items():
        torch.testing.assert_close(rank0["state"][key], value, rtol=1e-5, atol=1e-5, msg=key)
    # a real check only if training moved the weights far more than the tolerance
    moved = max((single["state"][k] - single["init"][k]).abs().max().item() for k in single["init"])
    assert moved > 1e-2
    assert all(torch.equal(single["init"][k], rank0["init"][k]) for k in single["init"])  # same start
    losses_one = [s["loss"] for s in single["history"]["steps"]]
    losses_two = [s["loss"] for s in rank0["history"]["steps"]]
    assert losses_one == pytest.approx(losses_two, rel=1e-5)    # the global batches' losses


def test_history_and_weights_are_identical_on_every_process(one_and_two):
    _, rank0, rank1 = one_and_two
    assert rank0["history"] == rank1["history"]
    for key, value in rank0["state"].items():
        assert torch.equal(rank1["state"][key], value), key


def test_batchnorm_buffers_end_identical_on_every_process(tmp_path):
    result = run_worker(tmp_path, "--batchnorm", processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0["history"] == rank1["history"]            # validation saw the same running stats
    for key, value in rank0["state"].items():
        assert torch.equal(rank1["state"][key], value), key


def test_a_failing_worker_ends_the_run_instead_of_hanging(tmp_path):
    result = run_worker(tmp_path, "--fail-at", "3", processes=2, timeout=150)  # a hang would time out
    assert result.returncode != 0
    assert "worker 1 fails on purpose" in result.stderr
    assert not (tmp_path / "rank0.pt").exists()


def test_shard_loader_needs_a_divisible_global_batch(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    data = nets.Shapes(12, image_size=8)
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        distributed.shard_loader(DataLoader(data, batch_size=4))
    with pytest.raises(ValueError, match="DataLoader"):
        distributed.shard_loader([(torch.zeros(1), torch.zeros(1))])
    shard = distributed.shard_loader(DataLoader(data, batch_size=6, shuffle=True))
    assert shard.batch_size == 2 and shard.sampler.shuffle and shard.sampler.num_replicas == 3


def test_single_process_is_untouched_by_the_distributed_path():
    assert not distributed.launched()
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda")
