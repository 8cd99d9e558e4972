"""Liveness and readiness as a state machine, the endpoints over real HTTP, the bridge process serving them."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from borobridge.app import delivery_bound
from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.errors import BoroHTTPError, CheckpointError, ConfigError, KafkaDeliveryError
from borobridge.health import Health, ReportingSink
from borobridge.health_http import serve_health
from borobridge.metrics import Metrics
from borobridge.settings import load_settings
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.scraped_metrics import run_bridge_until_healthy
from tests.support.scraped_metrics import sample_values as _samples

BORO_503 = str(BoroHTTPError(503, "maintenance"))


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def ready_health(clock: FakeClock, **options: float) -> Health:
    """Restored, with one successful Boro poll behind it."""
    health = Health(poll_interval=2.0, clock=clock, **options)
    health.mark_restored()
    health.boro_succeeded()
    return health


def test_the_health_state_does_not_load_the_http_server() -> None:
    probe = "import sys, borobridge.health; print(sorted(m for m in sys.modules if m.startswith(HTTP)))"
    prelude = "HTTP = ('hypercorn', 'borobridge.asgi_server', 'borobridge.health_http'); "
    command = [sys.executable, "-c", prelude + probe]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"


# ---- liveness ----------------------------------------------------------------------------------------------------


def test_stall_limit_defaults_to_ten_poll_intervals_and_at_least_a_minute() -> None:
    assert Health(poll_interval=2.0).stall_after == 60.0
    assert Health(poll_interval=30.0).stall_after == 300.0
    assert Health(poll_interval=2.0, stall_after=5.0).stall_after == 5.0


def test_live_while_the_loop_makes_progress(clock: FakeClock) -> None:
    health = Health(stall_after=60.0, clock=clock)
    assert health.liveness() == (True, "ok")
    clock.advance(60.0)
    assert health.liveness() == (True, "ok")
    clock.advance(2.0)
    assert health.liveness() == (False, "the poll loop made no progress for 62 s (limit 60 s)")
    health.progress()
    assert health.liveness() == (True, "ok")


def test_failed_cycles_still_count_as_progress(clock: FakeClock) -> None:
    health = ready_health(clock, stall_after=60.0)
    for _ in range(10):
        clock.advance(30.0)
        health.boro_failed(BORO_503)
        health.progress()
    assert health.liveness() == (True, "ok")
    assert not health.readiness()[0]


def test_restoring_counts_as_progress(clock: FakeClock) -> None:
    health = Health(stall_after=60.0, clock=clock)
    clock.advance(90.0)
    assert not health.liveness()[0]
    health.mark_restored()
    assert health.liveness() == (True, "ok")


# ---- readiness: restore and Boro ---------------------------------------------------------------------------------


def test_not_ready_until_restored_and_polled(clock: FakeClock) -> None:
    health = Health(clock=clock)
    assert health.readiness() == (False, "restoring the stream cursors")
    health.mark_restored()
    assert health.readiness() == (False, "waiting for the first successful Boro poll")
    health.boro_succeeded()
    assert health.readiness() == (True, "ok")


def test_boro_failures_within_the_grace_period_keep_it_ready(clock: FakeClock) -> None:
    health = ready_health(clock, boro_grace=30.0)
    health.boro_failed(BORO_503)
    clock.advance(30.0)
    assert health.readiness() == (True, "ok")
    clock.advance(12.0)
    assert health.readiness() == (False, f"Boro polls failing for 42 s: {BORO_503}")


def test_boro_failure_reason_is_the_latest_and_the_age_the_first(clock: FakeClock) -> None:
    health = ready_health(clock, boro_grace=10.0)
    health.boro_failed(BORO_503)
    clock.advance(20.0)
    health.boro_failed("no answer from http://boro/ctrl_api/v1/json within 10.0 s")
    ready, reason = health.readiness()
    assert not ready
    assert reason == "Boro polls failing for 20 s: no answer from http://boro/ctrl_api/v1/json within 10.0 s"


def test_one_successful_poll_ends_a_run_of_failures(clock: FakeClock) -> None:
    health = ready_health(clock, boro_grace=10.0)
    health.boro_failed(BORO_503)
    clock.advance(60.0)
    health.boro_succeeded()
    assert health.readiness() == (True, "ok")
    health.boro_failed(BORO_503)
    clock.advance(5.0)
    assert health.readiness() == (True, "ok")


def test_failures_before_any_success_are_reported_at_once(clock: FakeClock) -> None:
    health = Health(clock=clock)
    health.mark_restored()
    clock.advance(1.0)
    health.boro_failed(BORO_503)
    assert health.readiness() == (False, f"Boro polls failing for 0 s: {BORO_503}")


def test_grace_and_sink_bound_defaults_follow_the_poll_interval() -> None:
    assert (Health(poll_interval=2.0).boro_grace, Health(poll_interval=2.0).sink_bound) == (30.0, 60.0)
    assert (Health(poll_interval=20.0).boro_grace, Health(poll_interval=20.0).sink_bound) == (100.0, 200.0)


# ---- readiness: sinks --------------------------------------------------------------------------------------------


def test_a_sink_that_never_answers_is_given_the_bound_from_registration(clock: FakeClock) -> None:
    health = ready_health(clock, sink_bound=60.0)
    health.expect_sink("kafka")
    clock.advance(60.0)
    assert health.readiness() == (True, "ok")
    clock.advance(1.0)
    assert health.readiness() == (False, "sink kafka has acknowledged nothing in 61 s")
    health.sink_succeeded("kafka")
    assert health.readiness() == (True, "ok")


def test_a_failing_sink_is_tolerated_for_the_bound(clock: FakeClock) -> None:
    health = ready_health(clock, sink_bound=60.0)
    health.expect_sink("kafka")
    health.sink_succeeded("kafka")
    health.sink_failed("kafka", "Kafka did not accept a batch of 3 events: timeout")
    clock.advance(60.0)
    assert health.readiness() == (True, "ok")
    clock.advance(15.0)
    health.sink_failed("kafka", "cannot restart the Kafka producer: refused")
    assert health.readiness() == (False, "sink kafka failing for 75 s: cannot restart the Kafka producer: refused")
    health.sink_succeeded("kafka")
    assert health.readiness() == (True, "ok")


def test_a_delivery_without_an_answer_is_unready_past_the_bound_from_its_start(clock: FakeClock) -> None:
    health = ready_health(clock, sink_bound=62.0)
    health.sink_succeeded("kafka")
    health.sink_delivering("kafka")
    clock.advance(62.0)
    assert health.readiness() == (True, "ok")
    clock.advance(1.0)
    assert health.readiness() == (False, "sink kafka failing for 63 s: a delivery has had no answer yet")
    health.sink_failed("kafka", "Kafka did not accept a batch of 3 events: timeout")
    health.sink_delivering("kafka")  # the retry does not restart the clock
    assert health.readiness() == (
        False,
        "sink kafka failing for 63 s: Kafka did not accept a batch of 3 events: timeout",
    )
    health.sink_succeeded("kafka")
    assert health.readiness() == (True, "ok")


def test_the_delivery_bound_is_a_poll_interval_and_the_sinks_own_limit(tmp_path: Path) -> None:
    environ = {"BOROBRIDGE_BORO__POLL_INTERVAL": "2", "BOROBRIDGE_STATE__PATH": str(tmp_path / "state.json")}
    assert delivery_bound(load_settings(None, environ)) is None
    kafka = environ | {
        "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "BOROBRIDGE_KAFKA__DELIVERY_TIMEOUT_MS": "5000",
    }
    assert delivery_bound(load_settings(None, kafka)) == 7.0
    mqtt = environ | {"BOROBRIDGE_MQTT__HOST": "127.0.0.1", "BOROBRIDGE_MQTT__PUBLISH_TIMEOUT": "3"}
    assert delivery_bound(load_settings(None, mqtt)) == 5.0


def test_an_unreachable_dependency_is_named_until_it_answers(clock: FakeClock) -> None:
    health = Health(stall_after=60.0, clock=clock)
    for _ in range(3):
        clock.advance(50.0)
        health.dependency_unreachable("kafka", "cannot reach 127.0.0.1:1: KafkaConnectionError('refused')")
    assert health.liveness() == (True, "ok")
    assert health.readiness() == (False, "kafka: cannot reach 127.0.0.1:1: KafkaConnectionError('refused')")
    health.dependency_reached("kafka")
    assert health.readiness() == (False, "restoring the stream cursors")


class FlakySink:
    """A committer that fails its first ``failures`` deliveries as a sink that is down does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def restore(self) -> dict[str, Checkpoint]:
        return {}

    async def deliver(self, batch: Batch) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise KafkaDeliveryError(
                f"Kafka did not accept a batch of {len(batch.events)} events: attempt {self.failures}"
            )


async def test_a_sink_outage_is_logged_once_and_its_end_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    health = ready_health(clock, sink_bound=5.0)
    committer = ReportingSink(FlakySink(failures=5), health, "kafka")
    caplog.set_level(logging.INFO, logger="borobridge")
    for _ in range(5):
        with pytest.raises(KafkaDeliveryError):
            await committer.deliver(Batch())
    for _ in range(3):
        await committer.deliver(Batch())
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "borobridge.health"]
    assert said == [
        (
            "WARNING",
            "sink kafka cannot deliver: Kafka did not accept a batch of 0 events: attempt 4; retrying until it answers",
        ),
        ("INFO", "sink kafka delivers again"),
    ]


def test_every_problem_is_named(clock: FakeClock) -> None:
    health = ready_health(clock, boro_grace=10.0, sink_bound=10.0)
    health.expect_sink("output")
    health.expect_sink("mqtt")
    health.sink_succeeded("mqtt")
    health.boro_failed(BORO_503)
    health.sink_failed("mqtt", "no PUBACK")
    clock.advance(11.0)
    ready, reason = health.readiness()
    assert not ready
    assert reason.split("; ") == [
        f"Boro polls failing for 11 s: {BORO_503}",
        "sink output has acknowledged nothing in 11 s",
        "sink mqtt failing for 11 s: no PUBACK",
    ]


def test_a_sink_reporting_without_registration_is_expected_from_then_on(clock: FakeClock) -> None:
    health = ready_health(clock, sink_bound=5.0)
    health.sink_failed("mqtt", "no PUBACK")
    clock.advance(6.0)
    assert health.readiness() == (False, "sink mqtt failing for 6 s: no PUBACK")


async def test_reporting_committer_reports_real_deliveries(tmp_path: Path, clock: FakeClock) -> None:
    health = ready_health(clock, sink_bound=5.0)
    sink = JsonLinesSink(FileCheckpointStore(tmp_path / "state.json"), tmp_path / "events.jsonl")
    committer = ReportingSink(sink, health, "output")
    try:
        assert await committer.restore() == {}
        await committer.deliver(Batch(checkpoints=[Checkpoint(stream="s1", update_token=7)]))
        assert health.readiness() == (True, "ok")
        (tmp_path / "state.json.tmp").mkdir()
        with pytest.raises(CheckpointError, match="cannot write the state file"):
            await committer.deliver(Batch(checkpoints=[Checkpoint(stream="s1", update_token=8)]))
    finally:
        sink.close()
    clock.advance(6.0)
    ready, reason = health.readiness()
    assert not ready
    assert reason.startswith("sink output failing for 6 s: cannot write the state file")


async def test_reporting_committer_reports_a_failed_restore(tmp_path: Path, clock: FakeClock) -> None:
    health = ready_health(clock, sink_bound=5.0)
    (tmp_path / "state.json").mkdir()
    committer = ReportingSink(JsonLinesSink(FileCheckpointStore(tmp_path / "state.json")), health, "output")
    with pytest.raises(CheckpointError):
        await committer.restore()
    clock.advance(6.0)
    assert "sink output failing for 6 s: cannot read the state file" in health.readiness()[1]


# ---- the endpoints over HTTP -------------------------------------------------------------------------------------


@pytest.fixture
async def served(clock: FakeClock) -> AsyncIterator[tuple[Health, Metrics, httpx.AsyncClient]]:
    """A Health on the fake clock and a Metrics registry, served on a free loopback port."""
    health = Health(poll_interval=2.0, clock=clock)
    metrics = Metrics()
    async with (
        serve_health(health, metrics.registry, "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, timeout=5.0) as client,
    ):
        yield health, metrics, client


async def test_livez_answers_ok_then_the_reason(
    served: tuple[Health, Metrics, httpx.AsyncClient], clock: FakeClock
) -> None:
    _, _, client = served
    response = await client.get("/livez")
    assert (response.status_code, response.text) == (200, "ok\n")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    clock.advance(61.0)
    response = await client.get("/livez")
    assert (response.status_code, response.text) == (503, "the poll loop made no progress for 61 s (limit 60 s)\n")


async def test_readyz_follows_restore_and_boro(
    served: tuple[Health, Metrics, httpx.AsyncClient], clock: FakeClock
) -> None:
    health, _, client = served
    response = await client.get("/readyz")
    assert (response.status_code, response.text) == (503, "restoring the stream cursors\n")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    health.mark_restored()
    health.boro_succeeded()
    assert (await client.get("/readyz")).status_code == 200
    health.boro_failed(BORO_503)
    clock.advance(42.0)
    response = await client.get("/readyz")
    assert (response.status_code, response.text) == (503, f"Boro polls failing for 42 s: {BORO_503}\n")


async def test_metrics_show_what_the_bridge_counted(served: tuple[Health, Metrics, httpx.AsyncClient]) -> None:
    _, metrics, client = served
    metrics.polls.labels("ok").inc(3)
    metrics.polls.labels("error").inc()
    metrics.transitions.labels("raised", "major", "etr").inc(2)
    metrics.active_alarms.set(5)
    metrics.poll_seconds.observe(0.25)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = _samples(response.text)
    assert samples[("borobridge_polls_total", (("outcome", "ok"),))] == 3.0
    assert samples[("borobridge_polls_total", (("outcome", "error"),))] == 1.0
    raised = (("group", "etr"), ("level", "major"), ("transition", "raised"))
    assert samples[("borobridge_transitions_total", raised)] == 2.0
    assert samples[("borobridge_active_alarms", ())] == 5.0
    assert samples[("borobridge_poll_duration_seconds_count", ())] == 1.0
    assert samples[("borobridge_poll_duration_seconds_sum", ())] == 0.25


async def test_metrics_in_openmetrics_when_asked(served: tuple[Health, Metrics, httpx.AsyncClient]) -> None:
    _, metrics, client = served
    metrics.records.inc(7)
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    lines = response.text.splitlines()
    assert "borobridge_records_total 7.0" in lines
    assert lines[-1] == "# EOF"


async def test_unknown_paths_and_methods(served: tuple[Health, Metrics, httpx.AsyncClient]) -> None:
    _, _, client = served
    assert (await client.get("/health")).status_code == 404
    assert (await client.get("/livez/extra")).status_code == 404
    response = await client.post("/readyz", content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert (await client.delete("/metrics")).status_code == 405


async def test_a_port_in_use_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"health\.port: cannot listen on 127\.0\.0\.1:{port}"):
            async with serve_health(Health(), Metrics().registry, "127.0.0.1", port):
                pass


# ---- the bridge process ------------------------------------------------------------------------------------------


async def test_the_bridge_process_serves_health_and_metrics(tmp_path: Path) -> None:
    answers, exit_code = await run_bridge_until_healthy(tmp_path)
    assert answers["/livez"] == "200 ok\n"
    assert answers["/readyz"] == "200 ok\n"
    assert exit_code == 0


def test_a_refusal_is_reported_at_once_with_the_settings_to_fix(clock: FakeClock) -> None:
    health = ready_health(clock, boro_grace=30.0)
    refusal = str(BoroHTTPError(404, "no such endpoint"))
    health.boro_failed(refusal, fix="boro.url")
    clock.advance(3.0)
    assert health.readiness() == (
        False,
        f"Boro refuses the bridge for 3 s: {refusal}; fix your configuration (boro.url)",
    )
    health.boro_succeeded()
    assert health.readiness() == (True, "ok")
