"""Reading what the bridge wrote to Kafka, the way a downstream consumer would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from borobridge.settings import KafkaSettings, load_settings

IDLE_POLLS = 3


def kafka_settings(bootstrap: str, **overrides: Any) -> tuple[KafkaSettings, str]:
    """Settings whose every topic and bridge name is unique to one test; returns them and the bridge name."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    environ = {
        "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "BOROBRIDGE_KAFKA__TOPICS__EVENTS": f"{prefix}.alarms.{{project_id}}",
        "BOROBRIDGE_KAFKA__TOPICS__ACTIVE": f"{prefix}.active",
        "BOROBRIDGE_KAFKA__TOPICS__CHECKPOINTS": f"{prefix}.checkpoints",
        "BOROBRIDGE_KAFKA__TOPICS__SCHEMAS": f"{prefix}.schemas",
        "BOROBRIDGE_KAFKA__TOPICS__DEAD_LETTERS": f"{prefix}.dlq",
        "BOROBRIDGE_KAFKA__TOPICS__PARTITIONS": "3",
        "BOROBRIDGE_KAFKA__LINGER_MS": "2",
    }
    environ |= {f"BOROBRIDGE_KAFKA__{key.upper()}": str(value) for key, value in overrides.items()}
    settings = load_settings(None, environ).kafka
    assert settings is not None
    return settings, prefix


async def consume(
    bootstrap: str, topics: list[str], *, committed_only: bool = True, **options: Any
) -> dict[str, list[Any]]:
    """Every record of ``topics`` from the beginning, per ``topic/partition`` in log order (bounded)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        enable_auto_commit=False,
        **options,
    )
    partitions = await partitions_of(bootstrap, topics, **options)
    await consumer.start()
    try:
        if not partitions:
            return {}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return await _drain(consumer)
    finally:
        await asyncio.sleep(0)  # let aiokafka's coordinator task start, or stop() re-raises its cancellation
        await consumer.stop()


async def partitions_of(bootstrap: str, topics: list[str], **options: Any) -> list[TopicPartition]:
    """Every partition of the topics that exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def _drain(consumer: AIOKafkaConsumer) -> dict[str, list[Any]]:
    records: dict[str, list[Any]] = defaultdict(list)
    idle = 0
    async with asyncio.timeout(60):
        while idle < IDLE_POLLS:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for partition, messages in batch.items():
                records[f"{partition.topic}/{partition.partition}"] += messages
    return dict(records)


def binary_events(records: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Binary-mode records parsed by the cloudevents SDK, as structured dicts, partition after partition."""
    events = []
    for messages in records.values():
        for message in messages:
            parsed = ce_kafka.from_binary(
                ce_kafka.KafkaMessage(dict(message.headers), message.key, message.value), JSONFormat()
            )
            event: dict[str, Any] = {name: str(value) for name, value in parsed.get_attributes().items()}
            event["data"] = parsed.get_data()
            assert event["partitionkey"] == message.key.decode()
            events.append(event)
    return events


def checkpoint_values(records: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Decoded checkpoint records in log order."""
    return [json.loads(m.value) for messages in records.values() for m in messages]
