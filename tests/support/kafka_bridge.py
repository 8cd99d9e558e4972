"""An in-process bridge delivering into the real Kafka, and the configuration, topics and reads around it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from borobridge.boro.client import BoroClient
from borobridge.kafka.sink import KafkaSink
from borobridge.pipeline import Pipeline
from borobridge.settings import KafkaSettings
from borobridge.simulator import Simulator
from tests.support.expectations import expected_ids
from tests.support.kafka_reading import binary_events, consume, partitions_of
from tests.support.settings import bridge_settings

FIRST_EVENTS_S = 60.0
CATCH_UP_S = 60.0
READ_S = 30.0


async def committed(bootstrap: str, prefix: str, sim: Simulator) -> list[dict[str, Any]]:
    """The events committed so far, read up to the last stable offsets taken at the start.

    ``tests.support.kafka_reading.consume`` reads until the topics go quiet, which never happens while a bridge
    process commits every poll interval; this reads a snapshot instead.
    """
    partitions = await partitions_of(bootstrap, event_topics(prefix, sim))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[str, list[Any]] = defaultdict(list)
        async with asyncio.timeout(READ_S):
            while [p for p in partitions if await consumer.position(p) < ends[p]]:
                for partition, messages in (await consumer.getmany(timeout_ms=500)).items():
                    records[f"{partition.topic}/{partition.partition}"] += [
                        m for m in messages if m.offset < ends[partition]
                    ]
        return binary_events(dict(records))
    finally:
        await asyncio.sleep(0)  # let aiokafka's coordinator task start, or stop() re-raises its cancellation
        await consumer.stop()


async def wait_for_committed(
    bootstrap: str, prefix: str, sim: Simulator, process: asyncio.subprocess.Process, *, until: set[str] | None = None
) -> list[dict[str, Any]]:
    """Poll (bounded) until some events are committed, or every one of ``until``, or ``process`` ends."""
    deadline = asyncio.get_running_loop().time() + (CATCH_UP_S if until else FIRST_EVENTS_S)
    while True:
        events = await committed(bootstrap, prefix, sim)
        ids = {event["id"] for event in events}
        done = ids >= until if until else bool(ids)
        if done or process.returncode is not None or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.5)


def kafka_section(settings: KafkaSettings, *, outage: bool) -> dict[str, Any]:
    """The ``kafka`` configuration for this test's unique topics; short timeouts when the broker goes away."""
    topics = settings.topics
    section: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "linger_ms": 2,
        "topics": {
            "events": topics.events,
            "active": topics.active,
            "checkpoints": topics.checkpoints,
            "schemas": topics.schemas,
            "dead_letters": topics.dead_letters,
            "partitions": topics.partitions,
        },
    }
    if outage:
        section |= {"delivery_timeout_ms": 5000, "request_timeout_ms": 3000}
    return section


@contextlib.asynccontextmanager
async def kafka_bridge_and_sink(url: str, kafka: KafkaSettings, name: str) -> AsyncIterator[tuple[Pipeline, KafkaSink]]:
    """A restored pipeline delivering into Kafka, with no local state at all, and its committer."""
    settings = bridge_settings(url, BOROBRIDGE_NAME=name)
    async with httpx.AsyncClient() as http, KafkaSink(kafka, name) as sink:
        pipeline = Pipeline(BoroClient(http, settings.boro), sink, settings, server_name="boro-test")
        await pipeline.restore()
        yield pipeline, sink


@contextlib.asynccontextmanager
async def kafka_bridge(url: str, kafka: KafkaSettings, name: str) -> AsyncIterator[Pipeline]:
    """A restored pipeline delivering into Kafka, with no local state at all."""
    async with kafka_bridge_and_sink(url, kafka, name) as (pipeline, _):
        yield pipeline


async def poll_until_complete(pipeline: Pipeline, kafka: KafkaSettings, prefix: str, sim: Simulator) -> list[Any]:
    """Poll (bounded) until a read_committed consumer sees every expected transition; returns the events."""
    events: list[Any] = []
    for _ in range(30):
        await pipeline.poll_once()
        events = binary_events(await consume(kafka.bootstrap_servers, event_topics(prefix, sim)))
        if {e["id"] for e in events} >= expected_ids(sim):
            break
    return events


def event_topics(prefix: str, sim: Simulator) -> list[str]:
    return [f"{prefix}.alarms.{project.id}" for project in sim.projects()]


def topic_names(settings: KafkaSettings) -> dict[str, str]:
    topics = settings.topics
    return {
        "events": topics.events,
        "active": topics.active,
        "checkpoints": topics.checkpoints,
        "schemas": topics.schemas,
        "dead_letters": topics.dead_letters,
    }


def bridge_config(tmp_path: Path, url: str, kafka: KafkaSettings, name: str, **kafka_options: int) -> Path:
    config = {
        "name": name,
        "boro": {
            "url": url,
            "user_id": 4,
            "poll_interval": 0.2,
            "retry": {"initial_backoff": 0.02, "max_backoff": 0.5},
        },
        "first_start": {"mode": "all"},
        "health": {"enabled": False},
        "kafka": {
            "bootstrap_servers": kafka.bootstrap_servers,
            "linger_ms": 2,
            "topics": topic_names(kafka),
            **kafka_options,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def write_kafka_config(tmp_path: Path, url: str, bootstrap: str, topics: dict[str, str], name: str) -> Path:
    config = {
        "name": name,
        "boro": {"url": url, "user_id": 4, "server_name": "boro-test"},
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics},
        "logging": {"level": "WARNING"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path
