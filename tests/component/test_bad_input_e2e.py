"""Bad input against the whole bridge over real HTTP: poison records, a malformed ProjectsList, permanent refusals."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import msgspec
import pytest

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.health import Health
from borobridge.health_http import serve_health
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.simulator import ENDPOINT_PATH, SimReply, Simulator, serve_simulator
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.bad_input import poison, refusing
from tests.support.expectations import expected_ids, read_events, simulator_with_history
from tests.support.pipelines import bridge
from tests.support.settings import bridge_settings

MAX_BACKOFF = 0.1  # boro.retry.max_backoff in bridge_settings
CYCLES = 6


async def poll_until(pipeline: Pipeline, output: Path, expected: set[str], cycles: int = 60) -> None:
    """Poll (bounded) until the output holds every expected transition."""
    for _ in range(cycles):
        await pipeline.poll_once()
        if {event["id"] for event in read_events(output)} >= expected:
            return


def dead_letter_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter from stream")]


# ---- poison records ----------------------------------------------------------------------------------------------


async def test_a_millisecond_trigger_time_is_a_dead_letter_and_the_stream_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = simulator_with_history(5, seed=3, rate_per_second=20)
    bad = poison(sim, "TosDscp", trigger_time=1590570529000)
    sim.advance(new_records=20)
    output, metrics = tmp_path / "events.jsonl", Metrics()
    expected = expected_ids(sim) - {f"{bad.id}-event"}
    caplog.set_level(logging.WARNING)
    async with serve_simulator(sim) as url, bridge(url, tmp_path, metrics) as pipeline:
        await poll_until(pipeline, output, expected)
    emitted = {event["id"] for event in read_events(output)}
    assert emitted == expected
    [line] = dead_letter_lines(caplog)
    assert "trigger_time 1590570529000 is not a plausible Unix time in seconds" in line
    assert metrics.registry.get_sample_value("borobridge_dead_letters_total") == 1


async def test_an_end_time_too_large_for_a_time_is_a_dead_letter_and_the_stream_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = simulator_with_history(5, seed=4, rate_per_second=20)
    raised = sim.trigger(sim.tasks()[0].task_id, "BadSource")
    sim.clear(raised.id)
    bad = poison(sim, "IatError", clear=True, **{"info.time_end": 1e300})
    sim.advance(new_records=20)
    output = tmp_path / "events.jsonl"
    expected = expected_ids(sim) - {f"{bad.id}-raised", f"{bad.id}-cleared"}
    caplog.set_level(logging.WARNING)
    async with serve_simulator(sim) as url, bridge(url, tmp_path) as pipeline:
        await poll_until(pipeline, output, expected)
    emitted = {event["id"] for event in read_events(output)}
    assert emitted == expected
    assert f"{raised.id}-cleared" in emitted
    [line] = dead_letter_lines(caplog)
    assert "info.time_end 1e+300 is not a plausible number of seconds since the task started" in line


class BrokenDiscovery(Simulator):
    """The simulator, except that ProjectsList answers with a result of the wrong shape while ``broken``."""

    broken = False

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> SimReply:
        reply = super().handle(method, path, headers, body)
        if not self.broken:
            return reply
        document = msgspec.json.decode(reply.body)
        for item in document.get("reply", []):
            if item.get("method") == "ProjectsList":
                item["result"] = {"projects": "every one", "total_pages": 1}
        return SimReply(reply.status, reply.headers, msgspec.json.encode(document), reply.delay)


async def test_a_malformed_projects_list_keeps_the_known_projects_polled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = BrokenDiscovery(seed=8, projects=2, rate_per_second=20)
    sim.advance(new_records=20)
    output = tmp_path / "events.jsonl"
    overrides = {"BOROBRIDGE_BORO__DISCOVERY_INTERVAL": "0.01"}
    caplog.set_level(logging.WARNING)
    async with serve_simulator(sim) as url, bridge(url, tmp_path, overrides=overrides) as pipeline:
        await poll_until(pipeline, output, expected_ids(sim))
        assert len(pipeline.streams) == 2
        sim.broken = True
        sim.advance(new_records=30)
        await poll_until(pipeline, output, expected_ids(sim))
        for _ in range(CYCLES):
            await pipeline.poll_once()
    assert {event["id"] for event in read_events(output)} == expected_ids(sim)
    warnings = [r.getMessage() for r in caplog.records if "ProjectsList" in r.getMessage()]
    assert len(warnings) == 1
    assert "result is not a ProjectsList result" in warnings[0]
    assert "the known projects are still polled" in warnings[0]


# ---- permanent refusals ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def watched_bridge(
    url: str, tmp_path: Path, overrides: dict[str, str], health: Health
) -> AsyncIterator[Pipeline]:
    """A restored pipeline writing JSON lines into ``tmp_path`` and reporting to ``health``."""
    settings = bridge_settings(url, tmp_path, **overrides)
    assert settings.output.path is not None
    sink = JsonLinesSink(FileCheckpointStore(Path(settings.state.path)), Path(settings.output.path))
    async with httpx.AsyncClient() as http:
        client = BoroClient(http, settings.boro)
        pipeline = Pipeline(client, sink, settings, server_name="boro-test", metrics=Metrics(), health=health)
        try:
            await pipeline.restore()
            health.mark_restored()
            yield pipeline
        finally:
            sink.close()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("user_id", "access denied for user_id 5"),
        ("user_id_discovery", "access denied for user_id 5"),
        ("hmac", "HTTP 401"),
        ("path", "HTTP 404"),
    ],
)
async def test_a_permanent_refusal_backs_off_to_the_maximum_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, reason: str
) -> None:
    sim, overrides, suffix = refusing(kind)
    health, metrics = Health(poll_interval=0.1), Metrics()
    caplog.set_level(logging.DEBUG, logger="borobridge")
    async with (
        serve_simulator(sim) as url,
        serve_health(health, metrics.registry, "127.0.0.1", 0) as health_url,
        watched_bridge(url.replace(ENDPOINT_PATH, suffix + ENDPOINT_PATH), tmp_path, overrides, health) as pipeline,
        httpx.AsyncClient(base_url=health_url) as probe,
    ):
        delays, warned = [], []
        for _ in range(CYCLES):
            delays.append(await pipeline.poll_once())
            warned.append([r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING])
            caplog.clear()
        readyz = await probe.get("/readyz")
    assert delays == [MAX_BACKOFF] * CYCLES
    [advice] = [line for line in warned[0] if "fix your configuration" in line]
    assert reason in advice
    assert warned[1:] == [[]] * (CYCLES - 1)
    assert readyz.status_code == 503
    assert "fix your configuration" in readyz.text
    assert reason in readyz.text


async def test_a_refusal_that_ends_is_said_once_and_a_new_one_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim, overrides, _ = refusing("user_id")
    caplog.set_level(logging.INFO, logger="borobridge")
    async with serve_simulator(sim) as url, bridge(url, tmp_path, overrides=overrides) as pipeline:
        for _ in range(CYCLES):
            await pipeline.poll_once()
        sim.user_id = 5
        recovered = await pipeline.poll_once()
        answered = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
        sim.user_id = 4
        for _ in range(CYCLES):
            await pipeline.poll_once()
    assert recovered <= MAX_BACKOFF
    assert len(answered) == 1
    advice = [r.getMessage() for r in caplog.records if "fix your configuration" in r.getMessage()]
    assert len(advice) == 2
