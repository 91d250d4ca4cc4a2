"""``rps serve`` caps the threads of an engine pass (RPS_QUERY_THREADS), leaving cores to HTTP."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from rps_server import commands
from rps_server.settings import Settings


@pytest.fixture
def restored_threads():
    """Whatever the test sets, the process gets its BLAS and PyTorch threads back."""
    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):
        yield
    torch.set_num_threads(torch_threads)


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_setting_caps_blas_and_torch_threads(tmp_path, restored_threads):
    count = commands._limit_query_threads(Settings(data_dir=tmp_path, query_threads=1))
    assert count == 1
    assert blas_threads() == {1}
    assert torch.get_num_threads() == 1


def test_zero_means_half_the_usable_cpus(tmp_path, restored_threads, monkeypatch):
    monkeypatch.setattr(commands, "_usable_cpus", lambda: 8)
    assert commands._limit_query_threads(Settings(data_dir=tmp_path)) == 4
    monkeypatch.setattr(commands, "_usable_cpus", lambda: 1)
    assert commands._limit_query_threads(Settings(data_dir=tmp_path)) == 1
