"""One project's events topic that Kafka refuses: the bridge keeps running, says which project and topic, counts the
failure, keeps that project's cursor where it was, and delivers everything once the topic is fixed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from borobridge.boro.client import BoroClient
from borobridge.boro.simulator_http import serve_simulator
from borobridge.health import Health, ReportingCommitter
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.sinks.kafka import KafkaSink
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_reading import binary_events, checkpoint_values, consume, kafka_settings
from tests.support.settings import bridge_settings

pytestmark = pytest.mark.kafka

CYCLES = 3


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def test_a_refused_events_topic_keeps_the_bridge_running_and_that_cursor_still(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=41, projects=2, rate_per_second=20)
    refused = sim.projects()[1].id
    topic = f"{prefix}.alarms.{refused}"
    async with admin_client(kafka.bootstrap) as admin:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    health, metrics = Health(poll_interval=0.1, sink_bound=0.0), Metrics()
    topics = [f"{prefix}.alarms.{project.id}" for project in sim.projects()]
    async with serve_simulator(sim) as url, httpx.AsyncClient() as http, KafkaSink(settings, prefix) as sink:
        bridge = bridge_settings(url, BOROBRIDGE_NAME=prefix)
        committer = ReportingCommitter(sink, health, "kafka", metrics=metrics)
        pipeline = Pipeline(BoroClient(http, bridge.boro), committer, bridge, server_name="boro-test", health=health)
        await pipeline.restore()
        health.mark_restored()
        for _ in range(CYCLES):
            await pipeline.poll_once()  # a stopping error would be raised here
        ready, reason = health.readiness()
        checkpoints_while_refused = checkpoint_values(await consume(kafka.bootstrap, [settings.topics.checkpoints]))
        async with admin_client(kafka.bootstrap) as admin:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": "delete"})])
        for _ in range(CYCLES * 10):
            await pipeline.poll_once()
            events = binary_events(await consume(kafka.bootstrap, topics))
            if {event["id"] for event in events} >= expected_ids(sim):
                break
    failures = metrics.registry.get_sample_value("borobridge_errors_total", {"kind": "event_topic"})
    assert failures is not None
    assert failures >= CYCLES
    assert not ready
    assert f"project {refused}: its events topic {topic} cannot be used" in reason
    assert "cleanup.policy=compact" in reason
    assert f"boro-test/{refused}" not in {checkpoint["stream"] for checkpoint in checkpoints_while_refused}
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
