"""Shared fixtures: no test may reach the network, and pretrained-weight loading is
exercised offline through torch.hub's own cache with stand-in checkpoints."""

from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torch.hub


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a non-loopback connection fails the test."""
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache whose downloads fail as they do offline.

    Returns ``put(weights_entry, state_dict)``, which stores a stand-in checkpoint exactly
    where ``torch.hub.load_state_dict_from_url`` looks for ``weights_entry.url``.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)

    def put(weights_entry, state_dict) -> Path:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights_entry.url).path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state_dict, path)
        return path

    return put


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module. On a busy 2-core machine two threads competing
    with other processes make depthwise and grouped convs 10-40x slower; results are the
    same either way. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
