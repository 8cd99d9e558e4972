"""Which streams a pipeline opens (:class:`borobridge.discovery.Discovery`), against the simulator over
``httpx.MockTransport``: projects found again every interval, a failed discovery said once and survived while there
are known streams, other shards' projects left out, checkpoints resumed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import httpx
import pytest

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint
from borobridge.discovery import Discovery
from borobridge.errors import BoroError
from borobridge.metrics import Metrics
from borobridge.settings import Settings, load_settings
from borobridge.simulator import Simulator, as_mock_transport_handler
from borobridge.streams import Stream
from tests.support.clock import ManualClock
from tests.support.settings import bridge_environ

INTERVAL: Final = 300.0
LOGGER: Final = "borobridge.discovery.test"


class Boro:
    """The simulator of ``projects`` projects, changed at will, or down (HTTP 503)."""

    def __init__(self, projects: int) -> None:
        self.projects = projects
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, text="down for maintenance")
        return as_mock_transport_handler(Simulator(seed=1, projects=self.projects))(request)


async def no_sleep(_: float) -> None:
    return None


def settings(**overrides: str) -> Settings:
    return load_settings(None, bridge_environ() | {"BOROBRIDGE_BORO__DISCOVERY_INTERVAL": str(INTERVAL)} | overrides)


@asynccontextmanager
async def discovery_of(
    boro: Boro,
    options: Settings,
    clock: ManualClock,
    owns: Callable[[str], bool] | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Discovery]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(boro)) as http:
        client = BoroClient(http, options.boro, sleep=no_sleep)
        yield Discovery(
            client,
            options,
            server="boro-test",
            owns=owns,
            metrics=metrics or Metrics(),
            logger=logging.getLogger(LOGGER),
            clock=clock,
        )


def projects_of(streams: list[Stream]) -> list[int]:
    return [stream.base.project_id for stream in streams]


async def test_projects_that_appear_are_opened_once_the_discovery_interval_has_passed() -> None:
    boro, clock = Boro(projects=2), ManualClock()
    async with discovery_of(boro, settings(), clock) as discovery:
        assert projects_of(await discovery.new_streams()) == [23, 24]
        boro.projects = 3
        assert await discovery.new_streams() == []
        clock.now += INTERVAL
        assert projects_of(await discovery.new_streams()) == [25]
        assert sorted(discovery.streams) == [23, 24, 25]


async def test_configured_projects_are_opened_once_without_asking_boro() -> None:
    boro, clock = Boro(projects=2), ManualClock()
    boro.down = True
    async with discovery_of(boro, settings(BOROBRIDGE_BORO__PROJECTS="[24, 30]"), clock) as discovery:
        assert projects_of(await discovery.new_streams()) == [24, 30]
        assert await discovery.new_streams() == []


async def test_a_failed_discovery_keeps_the_known_streams_and_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    boro, clock = Boro(projects=2), ManualClock()
    async with discovery_of(boro, settings(), clock) as discovery:
        await discovery.new_streams()
        boro.down = True
        for _ in range(3):
            clock.now += INTERVAL
            assert await discovery.new_streams() == []
        boro.down, boro.projects = False, 3
        clock.now += INTERVAL
        assert projects_of(await discovery.new_streams()) == [25]
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO]
    failed = [message for level, message in lines if level == logging.WARNING]
    assert len(failed) == 1, failed
    assert failed[0].startswith("project discovery failed (")
    assert f"the known projects are still polled, discovery retried in {INTERVAL:g} s" in failed[0]
    assert sum(message == "project discovery works again" for _, message in lines) == 1


async def test_a_discovery_that_fails_before_any_stream_is_known_fails() -> None:
    boro, clock = Boro(projects=2), ManualClock()
    boro.down = True
    async with discovery_of(boro, settings(), clock) as discovery:
        with pytest.raises(BoroError):
            await discovery.new_streams()
        boro.down = False
        assert projects_of(await discovery.new_streams()) == [23, 24], "a failed first discovery waited an interval"


async def test_the_projects_of_other_shards_are_left_out() -> None:
    boro, clock = Boro(projects=3), ManualClock()
    async with discovery_of(boro, settings(), clock, owns=lambda stream: stream.endswith("/24")) as discovery:
        assert projects_of(await discovery.new_streams()) == [24]


async def test_a_stream_resumes_from_its_checkpoint_and_a_new_one_starts_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    boro, clock, metrics = Boro(projects=2), ManualClock(), Metrics()
    options = settings(BOROBRIDGE_FIRST_START__HISTORY="beside")
    async with discovery_of(boro, options, clock, metrics=metrics) as discovery:
        discovery.resume_from({"boro-test/23": Checkpoint(stream="boro-test/23", update_token=77)})
        resumed, new = await discovery.new_streams()
    assert resumed.token == 77
    assert resumed.backfill is None
    assert new.token is None
    assert new.backfill is not None
    assert metrics.registry.get_sample_value("borobridge_backfill_remaining_seconds", {"stream": resumed.id}) == 0
    assert metrics.registry.get_sample_value("borobridge_backfill_remaining_seconds", {"stream": new.id}) is None
    messages = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert messages == [
        "stream boro-test/23 opened at token 77",
        "stream boro-test/24 opened at the active-state snapshot (page 1)",
        "stream boro-test/24: reading history from period 1.. beside the live alarms",
    ]
