"""Fixtures shared by the whole suite; the real brokers come from tests/support."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

pytest_plugins = ["tests.support.kafka", "tests.support.mosquitto", "tests.support.ports"]

# CI draws the same scenarios on every run, so a run's verdict is about the change and can be repeated;
# elsewhere every run draws new ones (pass --hypothesis-seed=N to repeat one).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage at the end of every test, so a resource a test leaks is reported against that test."""
    yield
    gc.collect()
