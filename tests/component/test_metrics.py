"""Metrics an alert can rely on: present from the first scrape, and following what they claim to measure."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from borobridge import __version__, errors
from borobridge import metrics as metrics_module
from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.errors import CheckpointError
from borobridge.health import Health, ReportingSink
from borobridge.health_http import serve_health
from borobridge.metrics import Metrics
from borobridge.simulator import Simulator, serve_simulator
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.pipelines import bridge
from tests.support.ports import free_port
from tests.support.scraped_metrics import scrape_running_bridge
from tests.support.settings import bridge_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    """Every sample of an exposition by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def exposed(metrics: Metrics) -> Samples:
    return samples_of(generate_latest(metrics.registry).decode())


def error_kinds() -> set[str]:
    """The kind of every error class, and the MQTT relay's own kind for what it did not expect."""
    found: set[str] = set()
    pending: list[type[errors.BridgeError]] = [errors.BridgeError]
    while pending:
        cls = pending.pop()
        found.add(cls.kind)
        pending += cls.__subclasses__()
    return found | {"mqtt_relay"}


def test_build_info_names_the_version() -> None:
    assert exposed(Metrics())[("borobridge_build_info", (("version", __version__),))] == 1.0


def test_process_metrics_show_memory_and_start_time() -> None:
    samples = exposed(Metrics())
    start = samples[("process_start_time_seconds", ())]
    assert time.time() - 3600 < start <= time.time()
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name, _ in samples)


def test_every_error_and_failure_series_is_present_at_zero_from_the_start() -> None:
    samples = exposed(Metrics())
    for kind in error_kinds():
        assert samples.get(("borobridge_errors_total", (("kind", kind),))) == 0.0, kind
    for outcome in ("ok", "error"):
        assert samples.get(("borobridge_polls_total", (("outcome", outcome),))) == 0.0, outcome
    for reason in ("tombstone", "undecodable", "not_a_cloudevent"):
        assert samples.get(("borobridge_mqtt_relay_skipped_total", (("reason", reason),))) == 0.0, reason
    assert samples[("borobridge_dead_letters_total", ())] == 0.0


async def test_ready_gauge_follows_what_readyz_answers() -> None:
    health = Health(poll_interval=2.0)
    metrics = Metrics()
    metrics.follow_readiness(health.readiness)
    async with (
        serve_health(health, metrics.registry, "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, timeout=5.0) as client,
    ):

        async def answers() -> tuple[int, float]:
            ready = (await client.get("/readyz")).status_code
            return ready, samples_of((await client.get("/metrics")).text)[("borobridge_ready", ())]

        assert await answers() == (503, 0.0)
        health.mark_restored()
        health.boro_succeeded()
        assert await answers() == (200, 1.0)
        health.boro_failed("refused", fix="boro.url")
        assert await answers() == (503, 0.0)


async def test_every_boro_http_exchange_is_timed_failed_ones_too(tmp_path: Path) -> None:
    metrics = Metrics()
    async with serve_simulator(Simulator(seed=3, rate_per_second=0), advance_every=None) as url:
        settings = bridge_settings(url, tmp_path)
        async with httpx.AsyncClient(transport=metrics_module.timed_transport(metrics.boro_request_seconds)) as http:
            client = BoroClient(http, settings.boro)
            assert await client.project_ids()
            await client.project_ids()
    assert exposed(metrics)[("borobridge_boro_request_seconds_count", ())] == 2.0
    assert exposed(metrics)[("borobridge_boro_request_seconds_sum", ())] > 0.0
    refused = bridge_settings(f"http://127.0.0.1:{free_port()}/ctrl_api/v1/json", tmp_path)
    async with httpx.AsyncClient(transport=metrics_module.timed_transport(metrics.boro_request_seconds)) as http:
        client = BoroClient(http, refused.boro, sleep=lambda _: _no_wait())
        with pytest.raises(errors.BoroTransportError):
            await client.project_ids()
    assert exposed(metrics)[("borobridge_boro_request_seconds_count", ())] == 6.0  # four attempts


async def _no_wait() -> None:
    return None


async def test_a_failed_delivery_is_counted_by_its_kind(tmp_path: Path) -> None:
    metrics = Metrics()
    sink = JsonLinesSink(FileCheckpointStore(tmp_path / "state.json"), tmp_path / "events.jsonl")
    committer = ReportingSink(sink, Health(), "output", metrics=metrics)
    try:
        await committer.deliver(Batch(checkpoints=[Checkpoint(stream="s1", update_token=7)]))
        (tmp_path / "state.json.tmp").mkdir()
        with pytest.raises(CheckpointError):
            await committer.deliver(Batch(checkpoints=[Checkpoint(stream="s1", update_token=8)]))
    finally:
        sink.close()
    assert exposed(metrics)[("borobridge_errors_total", (("kind", "checkpoint"),))] == 1.0


async def test_a_read_that_finds_the_cursor_unchanged_counts_as_current(tmp_path: Path) -> None:
    metrics = Metrics()
    quiet = Simulator(seed=5, projects=1, rate_per_second=0)
    async with serve_simulator(quiet, advance_every=None) as url, bridge(url, tmp_path, metrics) as pipeline:
        await pipeline.poll_once()
        [stream] = pipeline.streams
        key = ("borobridge_cursor_commit_timestamp_seconds", (("stream", stream.id),))
        first = exposed(metrics).get(key, 0.0)
        confirmed = time.time()
        await pipeline.poll_once()
        assert exposed(metrics).get(key, 0.0) >= confirmed > first


async def test_reconciliation_series_exist_at_zero_for_every_opened_stream(tmp_path: Path) -> None:
    metrics = Metrics()
    async with (
        serve_simulator(Simulator(seed=6, projects=2, rate_per_second=0), advance_every=None) as url,
        bridge(url, tmp_path, metrics) as pipeline,
    ):
        await pipeline.poll_once()
        ids = [stream.id for stream in pipeline.streams]
    assert len(ids) == 2
    for stream_id in ids:
        assert exposed(metrics)[("borobridge_reconciled_transitions_total", (("stream", stream_id),))] == 0.0


def test_the_running_bridge_exposes_what_alerts_need(tmp_path: Path) -> None:
    samples = samples_of(scrape_running_bridge(tmp_path))
    assert samples[("borobridge_build_info", (("version", __version__),))] == 1.0
    assert samples[("borobridge_ready", ())] == 1.0
    assert samples[("borobridge_poll_interval_seconds", ())] == 0.2
    assert samples[("borobridge_boro_request_seconds_count", ())] > 0
    assert ("process_start_time_seconds", ()) in samples
    for kind in error_kinds():
        assert ("borobridge_errors_total", (("kind", kind),)) in samples, kind
