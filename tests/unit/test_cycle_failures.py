"""A poll cycle that keeps failing the same way says so once, and once more when Boro answers again; the
metrics count every retry."""

from __future__ import annotations

import logging
from typing import Final

import httpx
import pytest

from borobridge.boro.client import MAX_ATTEMPTS, BoroClient
from borobridge.checkpoint import Checkpoint
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.settings import load_settings
from borobridge.simulator import Simulator, as_mock_transport_handler
from borobridge.sinks import Batch

FAILED_CYCLES: Final = 3


class Outage:
    """The simulator behind a Boro that answers HTTP 503 to its first requests."""

    def __init__(self, sim: Simulator, failures: int) -> None:
        self._answer = as_mock_transport_handler(sim)
        self.failures = failures

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.failures > 0:
            self.failures -= 1
            return httpx.Response(503, text="maintenance")
        return self._answer(request)


class NullSink:
    async def restore(self) -> dict[str, Checkpoint]:
        return {}

    async def deliver(self, batch: Batch) -> None:
        return None


async def no_sleep(_: float) -> None:
    return None


async def test_a_repeated_cycle_failure_is_said_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    options = load_settings(
        None,
        {
            "BOROBRIDGE_BORO__URL": "http://boro.test/ctrl_api/v1/json",
            "BOROBRIDGE_BORO__USER_ID": "4",
        },
    )
    metrics = Metrics()
    caplog.set_level(logging.INFO, logger="borobridge.pipeline")
    outage = Outage(Simulator(seed=1), FAILED_CYCLES * MAX_ATTEMPTS)
    async with httpx.AsyncClient(transport=httpx.MockTransport(outage)) as http:
        client = BoroClient(http, options.boro, sleep=no_sleep)
        pipeline = Pipeline(client, NullSink(), options, server_name="boro-test", metrics=metrics)
        await pipeline.restore()
        for _ in range(FAILED_CYCLES + 2):  # bounded: every failure, then two cycles that work
            await pipeline.poll_once()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    failed = [message for level, message in lines if level == logging.WARNING and "poll cycle failed" in message]
    assert len(failed) == 1, failed
    assert sum("Boro answers again" in message for _, message in lines) == 1
    assert metrics.registry.get_sample_value("borobridge_poll_cycle_retries_total") == FAILED_CYCLES
