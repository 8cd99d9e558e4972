"""``borobridge tail``: follow the committed alarm events in Kafka, one readable line each."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from borobridge.events import CloudEvent, from_kafka_record
from borobridge.settings import KafkaSettings
from borobridge.sinks.kafka_connection import connection_options
from borobridge.sinks.mqtt_relay import events_pattern


@dataclass(frozen=True)
class TailFilter:
    """Which events to show; None shows all."""

    project: str | None = None
    task: str | None = None
    level: str | None = None

    def accepts(self, event: CloudEvent) -> bool:
        """True when the event matches every given criterion."""
        attributes = event.attributes
        return (
            self.project in (None, attributes["project"])
            and self.task in (None, attributes["task"])
            and self.level in (None, attributes["severity"])
        )


def render(event: CloudEvent) -> str:
    """``time severity transition project/task group/subject [duration] id``; the id always comes last."""
    attributes = event.attributes
    transition = attributes["id"].rpartition("-")[2]
    duration = msgspec.json.decode(event.data).get("duration_seconds")
    lasted = f" ({duration:.1f} s)" if duration is not None else ""
    return (
        f"{attributes['time']}  {attributes['severity']:<7} {transition:<7} {attributes['partitionkey']:<16} "
        f"{attributes['triggergroup']}/{attributes['subject']}{lasted}  {attributes['id']}"
    )


async def tail(
    settings: KafkaSettings,
    chosen: TailFilter,
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_exit: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print matching events until ``limit`` are shown or nothing arrived for ``idle_exit`` seconds."""
    consumer = AIOKafkaConsumer(
        isolation_level="read_committed", enable_auto_commit=False, **connection_options(settings)
    )
    partitions = await _event_partitions(settings)
    await consumer.start()
    shown = 0
    try:
        consumer.assign(partitions)
        await (consumer.seek_to_beginning(*partitions) if from_beginning else consumer.seek_to_end(*partitions))
        idle = 0.0
        while (limit is None or shown < limit) and (idle_exit is None or idle < idle_exit):
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0.0 if batches else idle + 0.5
            shown += _show(batches, chosen, out, (limit - shown) if limit is not None else None)
    finally:
        await asyncio.sleep(0)  # aiokafka re-raises the cancellation of a coordinator task that never ran
        await consumer.stop()
    return shown


def _show(batches: dict[Any, list[Any]], chosen: TailFilter, out: TextIO, room: int | None) -> int:
    shown = 0
    for messages in batches.values():
        for message in messages:
            event = from_kafka_record(message.headers, message.value)
            if chosen.accepts(event) and (room is None or shown < room):
                print(render(event), file=out, flush=True)
                shown += 1
    return shown


async def _event_partitions(settings: KafkaSettings) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        pattern = re.compile(events_pattern(settings.topics.events))
        topics = [name for name in await admin.list_topics() if pattern.match(name)]
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
