"""The Kafka → MQTT relay: what Kafka committed, published to MQTT; offsets committed only after every PUBACK.

The relay runs beside the poll loop with its own consumer group (``borobridge-<name>-mqtt``) and reads the
events topics with ``read_committed``, so MQTT carries exactly what Kafka readers see, in the same per-task
order. An MQTT outage stalls only the relay: the batch in hand is retried with backoff until the broker
acknowledges it, Kafka delivery goes on, and nothing is skipped (at least once; a repeat has the same id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from borobridge.backoff import Backoff
from borobridge.errors import MqttDeliveryError
from borobridge.events import CloudEvent, from_kafka_record
from borobridge.health import Health
from borobridge.metrics import Metrics
from borobridge.settings import KafkaSettings
from borobridge.sinks.kafka_connection import connection_options
from borobridge.sinks.mqtt import MqttPublisher

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS: Final = 500
MAX_RECORDS: Final = 2000
NEVER_EVICT_MS: Final = 7 * 24 * 3600 * 1000  # a long MQTT outage must not cost the relay its partitions


def relay_group(bridge_name: str) -> str:
    """The consumer group of a bridge's relay."""
    return f"borobridge-{bridge_name}-mqtt"


def events_pattern(template: str) -> str:
    """A regular expression matching every topic the events template can produce."""
    before, _, after = template.partition("{project_id}")
    return f"^{re.escape(before)}[0-9]+{re.escape(after)}$"


class MqttRelay:
    """Consumes the committed events topics and republishes them over MQTT."""

    def __init__(
        self,
        kafka: KafkaSettings,
        publisher: MqttPublisher,
        bridge_name: str,
        *,
        metrics: Metrics,
        backoff: Backoff,
        health: Health | None = None,
    ) -> None:
        self._kafka = kafka
        self._publisher = publisher
        self._group = relay_group(bridge_name)
        self._metrics = metrics
        self._backoff = backoff
        self._health = health or Health()
        self.relayed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set."""
        consumer = AIOKafkaConsumer(
            group_id=self._group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=NEVER_EVICT_MS,
            metadata_max_age_ms=30_000,
            **connection_options(self._kafka),
        )
        await consumer.start()
        try:
            consumer.subscribe(pattern=events_pattern(self._kafka.topics.events))
            while not stop.is_set():
                await self._relay_once(consumer, stop)
        finally:
            await asyncio.sleep(0)  # aiokafka re-raises the cancellation of a coordinator task that never ran
            await consumer.stop()

    async def _relay_once(self, consumer: Any, stop: asyncio.Event) -> None:
        batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_RECORDS)
        if not batches:
            return
        events = [from_kafka_record(m.headers, m.value) for messages in batches.values() for m in messages]
        if not await self._published(events, stop):
            return
        offsets = {partition: messages[-1].offset + 1 for partition, messages in batches.items()}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("MQTT relay could not commit its offsets (%s); those events will be relayed again", exc)
        self.relayed += len(events)
        self._metrics.mqtt_relay_lag.set(_lag(consumer, offsets))

    async def _published(self, events: list[CloudEvent], stop: asyncio.Event) -> bool:
        """Retry until the broker acknowledged every event; False when stopped first (nothing is committed)."""
        while not stop.is_set():
            try:
                await self._publisher.publish(events)
            except MqttDeliveryError as error:
                self._metrics.errors.labels(error.kind).inc()
                self._health.sink_failed("mqtt", str(error))
                delay = self._backoff.next_delay()
                log.warning("MQTT relay: %s; retrying %d events in %.1f s", error, len(events), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            self._backoff.reset()
            self._health.sink_succeeded("mqtt")
            return True
        return False


def _lag(consumer: Any, offsets: dict[Any, int]) -> int:
    lag = 0
    for partition, position in offsets.items():
        highwater = consumer.highwater(partition)
        if highwater is not None:
            lag += max(0, highwater - position)
    return lag
