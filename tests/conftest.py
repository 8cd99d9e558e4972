"""Fixtures shared by the whole suite; the real brokers come from tests/support."""

from __future__ import annotations

pytest_plugins = ["tests.support.kafka", "tests.support.mosquitto"]
