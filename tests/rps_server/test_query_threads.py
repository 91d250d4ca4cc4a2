"""``rps serve`` sets the threads of an engine pass (RPS_QUERY_THREADS) and lets PyTorch's idle
threads sleep."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

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


def test_the_setting_caps_torch_threads_and_blas_runs_on_one(tmp_path, restored_threads):
    count = commands._limit_query_threads(Settings(data_dir=tmp_path, query_threads=1))
    assert count == 1
    assert blas_threads() == {1}
    assert torch.get_num_threads() == 1
    assert commands._limit_query_threads(Settings(data_dir=tmp_path, query_threads=2)) == 2
    assert blas_threads() == {1}  # OpenBLAS's idle threads would spin on the pass's cores
    assert torch.get_num_threads() == 2


def test_zero_means_the_usable_cpus_shared_among_concurrent_passes(
    tmp_path, restored_threads, monkeypatch
):
    monkeypatch.setattr(commands, "_usable_cpus", lambda: 8)
    assert commands._limit_query_threads(Settings(data_dir=tmp_path)) == 8
    assert commands._limit_query_threads(Settings(data_dir=tmp_path, concurrent_queries=2)) == 4
    assert commands._limit_query_threads(Settings(data_dir=tmp_path, concurrent_queries=16)) == 1
    monkeypatch.setattr(commands, "_usable_cpus", lambda: 1)
    assert commands._limit_query_threads(Settings(data_dir=tmp_path)) == 1


def test_idle_openmp_threads_are_told_to_sleep(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    commands.let_idle_threads_sleep()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_an_operator_s_wait_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    commands.let_idle_threads_sleep()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_serve_sets_the_policy_before_anything_imports_torch(tmp_path):
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: ``rps serve``'s first
    statement must run before the imports that bring torch."""
    source = inspect.getsource(commands._serve)
    assert source.index("let_idle_threads_sleep()") < source.index("import uvicorn")
    probe = (
        "import sys; from rps.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"  # parsing `rps serve`'s arguments did not load torch yet
