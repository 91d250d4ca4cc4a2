"""``rps serve`` freezes its start-up objects out of garbage collection, so a full
collection no longer walks (and pauses every thread for) the whole module graph."""

from __future__ import annotations

import gc
import re

import pytest

from rps_server import commands
from tests.helpers.processes import Backend, clean_env, start_api


@pytest.fixture
def unfrozen():
    """The test process gets its collector back as it was (nothing frozen)."""
    yield
    gc.unfreeze()


def test_objects_alive_at_start_up_leave_the_collected_generations(unfrozen):
    startup_object = {"settings": ["kept for the process's life"]}
    frozen = commands._freeze_startup_objects()
    assert frozen > 0  # (frozen objects freed later leave the count: compare no further)
    assert not any(candidate is startup_object for candidate in gc.get_objects())
    later_object = {"request": ["made after start-up"]}
    assert any(candidate is later_object for candidate in gc.get_objects())
    cycle: list = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # garbage made after the freeze is still collected


def test_the_server_freezes_before_it_serves(tmp_path):
    backend = Backend(env=clean_env(tmp_path), data_dir=tmp_path)
    try:
        api = start_api(backend)
        log = api.log_path.read_text()
    finally:
        backend.stop_all()
    match = re.search(r"(\d+) start-up objects frozen out of garbage collection", log)
    assert match is not None, log[-2000:]
    assert int(match.group(1)) > 100_000  # the modules, classes and app of an API process
