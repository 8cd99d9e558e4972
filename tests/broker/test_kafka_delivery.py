"""Kafka delivery on a real broker: exactly once for read_committed readers, whatever happens in between."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from borobridge.boro.client import BoroClient
from borobridge.errors import FencedError, KafkaDeliveryError, TopicPolicyError
from borobridge.kafka.sink import KafkaSink
from borobridge.pipeline import Pipeline
from borobridge.settings import load_settings
from borobridge.simulator import Faults, Simulator, serve_simulator
from tests.support.expectations import (
    assert_exactly_once_in_order,
    assert_valid_against_schemas,
    expected_ids,
    simulator_with_history,
)
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import bridge_config, event_topics, kafka_bridge, poll_until_complete, topic_names
from tests.support.kafka_reading import binary_events, checkpoint_values, consume, kafka_settings
from tests.support.pipelines import advancing
from tests.support.settings import boro_environ

pytestmark = pytest.mark.kafka

SOME_FAULTS = Faults(http_5xx=0.05, malformed=0.05, error_item=0.05, repeat=0.2, burst=0.02)


async def test_simulator_to_kafka_exactly_once_with_active_table(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=31, projects=2, rate_per_second=20, faults=SOME_FAULTS)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        async with advancing(sim):
            for _ in range(10):
                await pipeline.poll_once()
                await asyncio.sleep(0.1)
        events = await poll_until_complete(pipeline, settings, prefix, sim)
    assert len(events) > 100
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert_valid_against_schemas(events)
    active = await consume(kafka.bootstrap, [f"{prefix}.active"])
    latest: dict[bytes, bytes | None] = {}
    for message in (m for messages in active.values() for m in messages):
        latest[message.key] = message.value
    still_active = {key.decode().rsplit("/", 1)[1] for key, value in latest.items() if value is not None}
    assert still_active == {str(r.alarm["id"]) for r in sim.records() if r.alarm.get("active") is True}
    schemas = await consume(kafka.bootstrap, [f"{prefix}.schemas"])
    keys = {m.key for ms in schemas.values() for m in ms}
    assert keys >= {b"urn:borobridge:schema:alarm.raised.v1", b"urn:borobridge:asyncapi"}


async def test_restart_resumes_from_kafka_alone(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=32, projects=2, rate_per_second=20)
    async with serve_simulator(sim) as url:
        async with kafka_bridge(url, settings, prefix) as pipeline:
            await pipeline.poll_once()
        sim.advance(new_records=50)
        async with kafka_bridge(url, settings, prefix) as pipeline:
            assert all(stream.token is not None for stream in pipeline.streams) or not pipeline.streams
            events = await poll_until_complete(pipeline, settings, prefix, sim)
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    checkpoints = checkpoint_values(await consume(kafka.bootstrap, [f"{prefix}.checkpoints"]))
    assert {c["stream"] for c in checkpoints} == {f"boro-test/{p.id}" for p in sim.projects()}
    tokens: dict[str, int] = {}
    for checkpoint in checkpoints:
        if checkpoint["update_token"] is None:
            continue  # a first start still reading by period has no token yet
        assert checkpoint["update_token"] >= tokens.get(checkpoint["stream"], 0), "a cursor moved backwards"
        tokens[checkpoint["stream"]] = checkpoint["update_token"]


async def test_structured_mode_and_scram_sha_512(kafka: KafkaCluster) -> None:
    assert kafka.scram_bootstrap is not None
    plain, prefix = kafka_settings(kafka.scram_bootstrap, mode="structured")
    settings = load_settings(
        None,
        {
            "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": kafka.scram_bootstrap,
            "BOROBRIDGE_KAFKA__MODE": "structured",
            "BOROBRIDGE_KAFKA__SASL__USERNAME": str(kafka.scram_user),
            "BOROBRIDGE_KAFKA__SASL__PASSWORD": str(kafka.scram_password),
            "BOROBRIDGE_KAFKA__SASL__MECHANISM": "SCRAM-SHA-512",
            **{f"BOROBRIDGE_KAFKA__TOPICS__{k.upper()}": v for k, v in topic_names(plain).items()},
        },
    ).kafka
    assert settings is not None
    sim = simulator_with_history(5, seed=33, projects=1, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await pipeline.poll_once()
    records = await consume(kafka.bootstrap, event_topics(prefix, sim))
    events = [json.loads(m.value) for ms in records.values() for m in ms]
    headers = {dict(m.headers)["content-type"] for ms in records.values() for m in ms}
    assert headers == {b"application/cloudevents+json; charset=utf-8"}
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_wrong_scram_password_is_a_clear_failure(kafka: KafkaCluster) -> None:
    """aiokafka leaves the refused connection unclosed; it is collected here so no later test inherits it."""
    assert kafka.scram_bootstrap is not None
    environ = {
        "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": kafka.scram_bootstrap,
        "BOROBRIDGE_KAFKA__SASL__USERNAME": str(kafka.scram_user),
        "BOROBRIDGE_KAFKA__SASL__PASSWORD": "wrong",
        "BOROBRIDGE_KAFKA__SASL__MECHANISM": "SCRAM-SHA-256",
    }
    settings = load_settings(None, environ).kafka
    assert settings is not None
    with pytest.raises(KafkaDeliveryError, match=r"check kafka\.bootstrap_servers .* and the SASL credentials"):
        async with KafkaSink(settings, "wrong-password"):
            pass
    await asyncio.sleep(0.1)
    gc.collect()


async def test_topic_with_wrong_policy_is_refused(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.active", 1, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    with pytest.raises(TopicPolicyError) as refused:
        async with KafkaSink(settings, prefix):
            pass
    message = str(refused.value)
    assert f"{prefix}.active has cleanup.policy=delete" in message
    assert "needs cleanup.policy=compact" in message
    assert "kafka-configs.sh --alter" in message


async def test_poison_record_goes_to_the_dead_letter_topic(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=34, projects=1, rate_per_second=10)
    good = as_poisoned(sim)
    async with httpx.AsyncClient(transport=httpx.MockTransport(good)) as http, KafkaSink(settings, prefix) as sink:
        boro = load_settings(None, boro_environ())
        pipeline = Pipeline(BoroClient(http, boro.boro), sink, boro, server_name="boro-test")
        await pipeline.restore()
        await pipeline.poll_once()
        sim.advance(new_records=10)
        await pipeline.poll_once()
    letters = [m for ms in (await consume(kafka.bootstrap, [f"{prefix}.dlq"])).values() for m in ms]
    assert len(letters) >= 1
    headers = dict(letters[0].headers)
    assert b"Expected `int`, got `str`" in headers["borobridge_reason"]
    assert json.loads(letters[0].value)["id"] == "poison"
    events = binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))
    assert len(events) > 0, "the stream went on after the poison record"


def as_poisoned(sim: Simulator) -> Any:
    """A MockTransport handler that serves the simulator, with one undecodable record in every TaskAlarms page."""
    from borobridge.simulator import as_mock_transport_handler  # noqa: PLC0415

    handler = as_mock_transport_handler(sim)

    def poisoned(request: httpx.Request) -> httpx.Response:
        response = handler(request)
        body = json.loads(response.content)
        for item in body["reply"]:
            if item.get("method") == "TaskAlarms" and "result" in item and item["result"]["alarms"]:
                bad = dict(item["result"]["alarms"][0], id="poison")
                item["result"]["alarms"].insert(0, bad)
        return httpx.Response(response.status_code, json=body)

    return poisoned


async def test_a_second_instance_fences_the_first(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=35, projects=1, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as first:
        await first.poll_once()
        async with kafka_bridge(url, settings, prefix) as second:
            await second.poll_once()
            sim.advance(new_records=5)
            with pytest.raises(FencedError, match="took over transactional id"):
                await first.poll_once()


async def test_kcat_reads_the_committed_events(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=36, projects=1, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await pipeline.poll_once()
    expected = {int(i.split("-")[0]) for i in expected_ids(sim)}
    lines = await _kcat_until(kafka.bootstrap, event_topics(prefix, sim)[0], expected)
    assert {json.loads(data)["alarm"]["id"] for _, _, data in lines} == expected
    for key, headers, _ in lines:
        assert f"ce_partitionkey={key}" in headers
        assert "ce_specversion=1.0" in headers


async def _kcat_until(bootstrap: str, topic: str, expected: set[int]) -> list[list[str]]:
    """Run kcat as a read_committed reader until it sees the expected alarm ids, a few times at most.

    The broker writes a transaction's commit markers after the commit returns, so a reader started at once can
    meet a partition's end before its marker and stop early; the next run reads past it.
    """
    command = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-X", "isolation.level=read_committed"]
    lines: list[list[str]] = []
    for _ in range(10):
        kcat = await asyncio.create_subprocess_exec(*command, "-f", "%k\t%h\t%s\n", stdout=asyncio.subprocess.PIPE)
        async with asyncio.timeout(60):
            stdout, _ = await kcat.communicate()
        assert kcat.returncode == 0
        lines = [line.split("\t", 2) for line in stdout.decode().splitlines() if line]
        if {json.loads(data)["alarm"]["id"] for _, _, data in lines} >= expected:
            break
        await asyncio.sleep(0.5)
    return lines


# ---- the real process under SIGKILL, and broker failures ------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_at_random_moments_gives_every_transition_once(kafka: KafkaCluster, tmp_path: Path) -> None:
    rng = random.Random(4)
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=37, projects=2, rate_per_second=20, faults=SOME_FAULTS)
    command = [sys.executable, "-m", "borobridge", "run", "--config"]
    async with serve_simulator(sim) as url:
        config = bridge_config(tmp_path, url, settings, prefix)
        async with advancing(sim):
            for _ in range(5):
                process = await asyncio.create_subprocess_exec(*command, str(config))
                await asyncio.sleep(rng.uniform(2.0, 5.0))
                process.kill()
                await process.wait()
        process = await asyncio.create_subprocess_exec(*command, str(config))
        events: list[Any] = []
        for _ in range(30):
            await asyncio.sleep(1)
            events = binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))
            if {e["id"] for e in events} >= expected_ids(sim):
                break
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


@pytest.mark.slow
async def test_partition_leader_loss_loses_nothing(kafka_cluster: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka_cluster.bootstrap)
    sim = simulator_with_history(5, seed=38, projects=1, rate_per_second=20)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await pipeline.poll_once()
        topic = event_topics(prefix, sim)[0]
        leader = await kafka_cluster.leader_of(topic, 0)
        await kafka_cluster.stop_node(leader, kill=True)
        try:
            async with advancing(sim):
                for _ in range(10):
                    await pipeline.poll_once()
                    await asyncio.sleep(0.2)
            events = await poll_until_complete(pipeline, settings, prefix, sim)
        finally:
            await kafka_cluster.start_node(leader)
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


@pytest.mark.slow
async def test_broker_restart_mid_stream_loses_nothing(kafka: KafkaCluster, tmp_path: Path) -> None:
    """The real bridge process keeps polling through a broker outage and delivers everything once it is back."""
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=39, projects=1, rate_per_second=20)
    command = [sys.executable, "-m", "borobridge", "run", "--config"]
    async with serve_simulator(sim) as url:
        config = bridge_config(tmp_path, url, settings, prefix, delivery_timeout_ms=5000, request_timeout_ms=3000)
        process = await asyncio.create_subprocess_exec(*command, str(config))
        try:
            await wait_for_events(kafka.bootstrap, prefix, sim)
            await kafka.stop_node(1)
            sim.advance(new_records=40)
            await asyncio.sleep(8)  # the bridge polls, fails to deliver, backs off, and keeps its cursor
            await kafka.start_node(1)
            events = await wait_for_events(kafka.bootstrap, prefix, sim)
        finally:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await process.wait()
    assert process.returncode == 0
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


async def wait_for_events(bootstrap: str, prefix: str, sim: Simulator, seconds: int = 60) -> list[Any]:
    """The committed events, once they hold every expected transition (bounded)."""
    events: list[Any] = []
    for _ in range(seconds):
        events = binary_events(await consume(bootstrap, event_topics(prefix, sim)))
        if {e["id"] for e in events} >= expected_ids(sim):
            break
        await asyncio.sleep(1)
    return events
