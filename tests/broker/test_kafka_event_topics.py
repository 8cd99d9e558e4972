"""One project's events topic that Kafka refuses: the bridge keeps running, says which project and topic, counts the
failure, keeps that project's cursor where it was while the other projects' events go on, and delivers everything
once the topic is fixed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from borobridge.boro.client import BoroClient
from borobridge.health import Health, ReportingSink
from borobridge.kafka.sink import KafkaSink
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.simulator import Simulator, serve_simulator
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_reading import binary_events, checkpoint_values, consume, kafka_settings
from tests.support.settings import bridge_settings

pytestmark = pytest.mark.kafka

CYCLES = 3
CATCH_UP_CYCLES = 60


def ids_of_project(sim: Simulator, project: int) -> set[str]:
    """The transition ids one project's records must give so far."""
    records = {str(stored.alarm["id"]) for stored in sim.records() if stored.alarm["project_id"] == project}
    return {event_id for event_id in expected_ids(sim) if event_id.rpartition("-")[0] in records}


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def test_a_refused_events_topic_holds_back_its_project_alone(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=41, projects=2, rate_per_second=20)
    other, refused = (project.id for project in sim.projects())
    topic = f"{prefix}.alarms.{refused}"
    async with admin_client(kafka.bootstrap) as admin:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    health, metrics = Health(poll_interval=0.1, sink_bound=0.0), Metrics()
    topics = [f"{prefix}.alarms.{project.id}" for project in sim.projects()]
    async with serve_simulator(sim) as url, httpx.AsyncClient() as http, KafkaSink(settings, prefix) as sink:
        bridge = bridge_settings(url, BOROBRIDGE_NAME=prefix, BOROBRIDGE_BORO__POLL_INTERVAL="0.2")
        committer = ReportingSink(sink, health, "kafka", metrics=metrics)
        pipeline = Pipeline(BoroClient(http, bridge.boro), committer, bridge, server_name="boro-test", health=health)
        await pipeline.restore()
        health.mark_restored()
        others_before = ids_of_project(sim, other)
        for _ in range(2):  # a poll interval or two
            await pipeline.poll_once()  # a stopping error would be raised here
        ready, reason = health.readiness()
        delivered_while_refused = binary_events(await consume(kafka.bootstrap, topics))
        checkpoints_while_refused = checkpoint_values(await consume(kafka.bootstrap, [settings.topics.checkpoints]))
        async with admin_client(kafka.bootstrap) as admin:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": "delete"})])
        for _ in range(CATCH_UP_CYCLES):
            await asyncio.sleep(min(await pipeline.poll_once(), 0.1))  # as the run loop waits between cycles
            events = binary_events(await consume(kafka.bootstrap, topics))
            if {event["id"] for event in events} >= expected_ids(sim):
                break
        ready_after, _ = health.readiness()
    assert others_before, "the other project had no events to deliver"
    assert others_before <= {event["id"] for event in delivered_while_refused}
    failures = metrics.registry.get_sample_value("borobridge_errors_total", {"kind": "event_topic"})
    assert failures is not None
    assert failures >= 1
    assert not ready
    assert f"stream boro-test/{refused} is held back" in reason
    assert f"project {refused}: its events topic {topic} cannot be used" in reason
    assert "cleanup.policy=compact" in reason
    assert f"boro-test/{other}" in {checkpoint["stream"] for checkpoint in checkpoints_while_refused}
    held = [checkpoint for checkpoint in checkpoints_while_refused if checkpoint["stream"] == f"boro-test/{refused}"]
    pending = [saved.get("backfill") is not None or (saved.get("position") or {}).get("windows") for saved in held]
    assert all(pending), "a held project's history moved on"
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert ready_after
