"""The whole bridge against the Boro simulator over real HTTP, with faults on."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.errors import SinkError
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.simulator import Change, Faults, Simulator, serve_simulator
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.expectations import (
    assert_exactly_once_in_order,
    assert_valid_against_schemas,
    expected_ids,
    read_events,
    simulator_with_history,
)
from tests.support.pipelines import advancing, bridge
from tests.support.settings import bridge_settings

ALL_FAULTS = Faults(
    http_5xx=0.1,
    http_429=0.05,
    retry_after=0.05,
    slow=0.05,
    slow_seconds=0.2,
    malformed=0.1,
    error_item=0.1,
    repeat=0.2,
    burst=0.02,
)


async def catch_up(pipeline: Pipeline, sim: Simulator, output: Path, since: int = 0, seconds: float = 30.0) -> None:
    """Poll until the output holds every expected transition (bounded in time)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await pipeline.poll_once()
        if {e["id"] for e in read_events(output)} >= expected_ids(sim, since):
            return


@pytest.mark.parametrize("token_mode", ["sequence", "timestamp"])
async def test_every_change_once_in_order_with_every_fault(tmp_path: Path, token_mode: str) -> None:
    sim = simulator_with_history(20, seed=7, projects=3, rate_per_second=20, faults=ALL_FAULTS, token_mode=token_mode)
    async with serve_simulator(sim) as url, bridge(url, tmp_path) as pipeline:
        async with advancing(sim):
            for _ in range(20):
                await pipeline.poll_once()
                await asyncio.sleep(0.05)
        await catch_up(pipeline, sim, tmp_path / "events.jsonl", seconds=90)
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) > 200
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert_valid_against_schemas(events)


async def test_metrics_count_what_the_scenario_produced(tmp_path: Path) -> None:
    sim = simulator_with_history(10, seed=13, projects=2, rate_per_second=20)
    metrics = Metrics()
    async with serve_simulator(sim) as url, bridge(url, tmp_path, metrics) as pipeline:
        await catch_up(pipeline, sim, tmp_path / "events.jsonl", seconds=20)
        sim.faults = Faults(error_item=1.0)
        await pipeline.poll_once()
    events = read_events(tmp_path / "events.jsonl")
    registry = metrics.registry
    by_kind = Counter((e["data"]["transition"], e["severity"], e["triggergroup"]) for e in events)
    for (transition, level, group), count in by_kind.items():
        labels = {"transition": transition, "level": level, "group": group}
        assert registry.get_sample_value("borobridge_transitions_total", labels) == count
    active = sum(1 for r in sim.records() if r.alarm.get("active") is True)
    assert registry.get_sample_value("borobridge_active_alarms") == active
    assert registry.get_sample_value("borobridge_errors_total", {"kind": "boro_reply"}) == 2
    assert registry.get_sample_value("borobridge_polls_total", {"outcome": "error"}) == 2
    assert (registry.get_sample_value("borobridge_records_total") or 0) >= len(sim.records())
    for stream in pipeline.streams:
        assert registry.get_sample_value("borobridge_cursor_commit_timestamp_seconds", {"stream": stream.id})


async def test_cursor_stays_while_boro_fails(tmp_path: Path) -> None:
    sim = simulator_with_history(5, seed=3, rate_per_second=20)
    async with (
        serve_simulator(sim) as url,
        bridge(url, tmp_path, overrides={"BOROBRIDGE_FIRST_START__MODE": "now"}) as pipeline,
    ):
        await pipeline.poll_once()
        tokens = [stream.token for stream in pipeline.streams]
        state = (tmp_path / "state.json").read_bytes()
        sim.faults = Faults(error_item=1.0)
        sim.advance(new_records=10)
        await pipeline.poll_once()
        assert [stream.token for stream in pipeline.streams] == tokens
        assert (tmp_path / "state.json").read_bytes() == state
        sim.faults = Faults(http_5xx=1.0)
        await pipeline.poll_once()
        assert (tmp_path / "state.json").read_bytes() == state
        sim.faults = Faults()
        await pipeline.poll_once()
        assert [stream.token for stream in pipeline.streams] != tokens


class FlakySink:
    """The JSON-lines sink, failing the deliveries whose numbers (from 1) are in ``failing``."""

    def __init__(self, sink: JsonLinesSink, failing: set[int]) -> None:
        self.sink = sink
        self.failing = failing
        self.deliveries = 0

    async def restore(self) -> dict[str, Checkpoint]:
        return await self.sink.restore()

    async def deliver(self, batch: Batch) -> None:
        self.deliveries += 1
        await asyncio.sleep(0.1)  # long enough for the next round to be read and fed meanwhile
        if self.deliveries in self.failing:
            raise SinkError(f"delivery {self.deliveries} refused by the test")
        await self.sink.deliver(batch)


async def test_a_failed_round_also_gives_up_the_round_prepared_behind_it(tmp_path: Path) -> None:
    """A burst read in pages of 5 drains in many rounds; deliveries fail while the next round is already fed."""
    sim = simulator_with_history(30, seed=29, projects=2, rate_per_second=10)
    active_at_start = {f"{r.alarm['id']}-raised" for r in sim.records() if r.alarm.get("active") is True}
    start_seq = sim.changes()[-1].seq
    output = tmp_path / "events.jsonl"
    committer = FlakySink(JsonLinesSink(FileCheckpointStore(tmp_path / "state.json"), output), set())
    overrides = {"BOROBRIDGE_FIRST_START__MODE": "now", "BOROBRIDGE_BORO__PAGE_SIZE": "5"}
    async with serve_simulator(sim) as url, httpx.AsyncClient() as http:
        settings = bridge_settings(url, tmp_path, **overrides)
        pipeline = Pipeline(BoroClient(http, settings.boro), committer, settings, server_name="boro-test")
        try:
            await pipeline.restore()
            await pipeline.poll_once()
            sim.advance(new_records=150)
            committer.failing = {committer.deliveries + n for n in (2, 3, 5, 6, 8)}
            for _ in range(50):  # bounded: a cycle that meets a failure ends there
                await pipeline.poll_once()
                expected = active_at_start | {_event_id(change) for change in sim.changes(start_seq)}
                if {event["id"] for event in read_events(output)} >= expected:
                    if committer.deliveries > max(committer.failing):
                        break
                    sim.advance(new_records=20)  # the burst drained before every planned failure: more rounds
        finally:
            committer.sink.close()
    assert committer.deliveries > max(committer.failing)
    events = read_events(output)
    history = _boundary_history(sim, start_seq)
    assert_exactly_once_in_order([e for e in events if e["id"] not in history - expected], sim, expected)
    assert len(events) == len({event["id"] for event in events})


def _boundary_history(sim: Simulator, start_seq: int) -> set[str]:
    """Transitions of changes made before the start within two seconds of it.

    Behind a full page the bridge reads by period from the second before the latest Boro time it had seen, and a
    period cannot be cut finer than a second: history of those seconds may be delivered (once), the rest not.
    """
    start = [change for change in sim.changes() if change.seq <= start_seq]
    late = [change for change in start if change.updated_at >= start[-1].updated_at - 2]
    return {_event_id(change) for change in late} | {f"{change.record_id}-raised" for change in late}


def _event_id(change: Change) -> str:
    suffix = "event" if change.type == "event" else ("cleared" if change.transition == "cleared" else "raised")
    return f"{change.record_id}-{suffix}"


async def test_first_start_now_raises_the_active_states_then_follows(tmp_path: Path) -> None:
    sim = simulator_with_history(60, seed=11, rate_per_second=30)
    active_at_start = {f"{r.alarm['id']}-raised" for r in sim.records() if r.alarm.get("active") is True}
    start_seq = sim.changes()[-1].seq
    async with (
        serve_simulator(sim) as url,
        bridge(url, tmp_path, overrides={"BOROBRIDGE_FIRST_START__MODE": "now"}) as pipeline,
    ):
        await pipeline.poll_once()
        first = {e["id"] for e in read_events(tmp_path / "events.jsonl")}
        assert first == active_at_start
        sim.advance(new_records=40)
        await pipeline.poll_once()
    later = sim.changes(start_seq)
    events = read_events(tmp_path / "events.jsonl")
    assert len(later) > 20
    for change in later:
        suffix = "event" if change.type == "event" else ("cleared" if change.transition == "cleared" else "raised")
        assert f"{change.record_id}-{suffix}" in {e["id"] for e in events}


async def test_first_start_since_reads_only_the_period(tmp_path: Path) -> None:
    sim = simulator_with_history(120, seed=5, rate_per_second=40)
    since = int(sim.clock()) - 40
    since_text = dt.datetime.fromtimestamp(since, dt.UTC).isoformat()
    overrides = {"BOROBRIDGE_FIRST_START__MODE": "since", "BOROBRIDGE_FIRST_START__SINCE": since_text}
    async with serve_simulator(sim) as url, bridge(url, tmp_path, overrides=overrides) as pipeline:
        await pipeline.poll_once()
    emitted = {e["id"] for e in read_events(tmp_path / "events.jsonl")}
    assert emitted >= expected_ids(sim, since)
    too_old = expected_ids(sim) - expected_ids(sim, since - 1)
    assert too_old
    assert not emitted & too_old


async def test_a_burst_in_one_second_is_read_whole_with_timestamp_tokens(tmp_path: Path) -> None:
    sim = simulator_with_history(2, seed=9, rate_per_second=1, token_mode="timestamp")
    async with serve_simulator(sim) as url, bridge(url, tmp_path) as pipeline:
        await pipeline.poll_once()
        sim.burst(260)
        await catch_up(pipeline, sim, tmp_path / "events.jsonl", seconds=20)
    assert_exactly_once_in_order(read_events(tmp_path / "events.jsonl"), sim, expected_ids(sim))


# ---- the real process: embedded default, signals, SIGKILL -----------------------------------------------------


def bridge_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "borobridge", "run", *args]


async def test_embedded_default_prints_cloudevents(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *bridge_command(),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"BOROBRIDGE_HEALTH__ENABLED": "false"},
    )
    assert process.stdout is not None
    lines: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(20):
            while len(lines) < 5:
                lines.append(await process.stdout.readline())
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        rest, _ = await process.communicate()
    assert process.returncode == 0
    events = [json.loads(line) for line in [*lines, *rest.splitlines()] if line.strip()]
    assert len(events) >= 5
    assert_valid_against_schemas(events)
    for line in lines:
        message = ce_kafka.KafkaMessage({"content-type": b"application/cloudevents+json"}, None, line)
        assert ce_kafka.from_structured(message, JSONFormat()).get_id() == json.loads(line)["id"]
    assert (tmp_path / "borobridge-state.json").exists()


def write_config(tmp_path: Path, url: str) -> Path:
    config: dict[str, Any] = {
        "boro": {
            "url": url,
            "user_id": 4,
            "poll_interval": 0.2,
            "retry": {"initial_backoff": 0.02, "max_backoff": 0.2},
        },
        "first_start": {"mode": "all"},
        "output": {"path": str(tmp_path / "events.jsonl")},
        "state": {"path": str(tmp_path / "state.json")},
        "health": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    rng = random.Random(2026)
    sim = simulator_with_history(20, seed=21, projects=3, rate_per_second=40, faults=ALL_FAULTS)
    async with serve_simulator(sim) as url:
        config = write_config(tmp_path, url)
        async with advancing(sim):
            for _ in range(8):
                process = await asyncio.create_subprocess_exec(*bridge_command("--config", str(config)))
                await asyncio.sleep(rng.uniform(0.4, 2.0))
                process.kill()
                await process.wait()
        process = await asyncio.create_subprocess_exec(*bridge_command("--config", str(config)))
        deadline = asyncio.get_running_loop().time() + 40
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            output = tmp_path / "events.jsonl"
            if output.exists() and {e["id"] for e in read_events(output)} >= expected_ids(sim):
                break
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) > 300
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
