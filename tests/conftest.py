"""Fixtures shared by the whole suite; the real brokers come from tests/support."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.kafka", "tests.support.mosquitto", "tests.support.ports"]


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage at the end of every test, so a resource a test leaks is reported against that test."""
    yield
    gc.collect()
