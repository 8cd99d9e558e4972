"""The Kafka → MQTT relay: what Kafka committed, published to MQTT; offsets committed only after every PUBACK.

The relay runs beside the poll loop with its own consumer group (``borobridge-<name>-mqtt``) and reads the
events topics with ``read_committed``, so MQTT carries exactly what Kafka readers see, in the same per-task
order. An MQTT outage or refusal stalls only the relay: the batch in hand is retried with backoff until the broker
acknowledges it, Kafka delivery goes on, and nothing is skipped (at least once; a repeat has the same id).

A record that is not one of the bridge's CloudEvents (a tombstone, a foreign producer's record) is skipped and
counted. Any other failure (Kafka unreachable, an unexpected error) restarts the relay alone after a backoff:
:meth:`MqttRelay.run` never raises, so the poll loop beside it never stops because of the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from borobridge.backoff import Backoff
from borobridge.errors import KafkaClientError, KafkaDeliveryError, MqttDeliveryError, SinkError
from borobridge.events import CloudEvent, ForeignRecordError, from_kafka_record
from borobridge.health import Health
from borobridge.kafka.consumer import Consumer, committed_reader
from borobridge.kafka.records import ConsumedRecord, Partition
from borobridge.metrics import Metrics
from borobridge.retry import retry_delay
from borobridge.settings import KafkaSettings
from borobridge.sinks.mqtt import MqttPublisher

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS: Final = 500
MAX_RECORDS: Final = 2000
NEVER_EVICT_MS: Final = 7 * 24 * 3600 * 1000  # a long MQTT outage must not cost the relay its partitions
METADATA_MAX_AGE_MS: Final = 5_000  # how soon a new project's events topic is followed (one metadata request)
HEALTH_NAME: Final = "mqtt"
REQUIRED_ATTRIBUTES: Final = ("id", "project", "task", "triggergroup", "subject", "datacontenttype")


def relay_group(bridge_name: str) -> str:
    """The consumer group of a bridge's relay."""
    return f"borobridge-{bridge_name}-mqtt"


def events_pattern(template: str) -> str:
    """A regular expression matching every topic the events template can produce."""
    before, _, after = template.partition("{project_id}")
    return f"^{re.escape(before)}[0-9]+{re.escape(after)}$"


@dataclass(frozen=True, slots=True)
class Skipped:
    """Why a Kafka record cannot be relayed: ``reason`` labels the metric, ``detail`` explains it."""

    reason: str
    detail: str


def decode_record(headers: Sequence[tuple[str, bytes]], value: bytes | None) -> CloudEvent | Skipped:
    """The CloudEvent of an events-topic record, or why it is not one the relay can publish."""
    if value is None:
        return Skipped("tombstone", "a tombstone (no value)")
    try:
        event = from_kafka_record(headers, value)
    except ForeignRecordError as exc:
        return Skipped("not_a_cloudevent", str(exc))
    except (ValueError, KeyError, TypeError, msgspec.MsgspecError) as exc:
        return Skipped("undecodable", f"not a CloudEvent ({type(exc).__name__}: {exc})")
    attributes = event.attributes
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        return Skipped("not_a_cloudevent", f"no {', '.join(missing)} attribute")
    if not all(isinstance(text, str) for text in attributes.values()):
        return Skipped("not_a_cloudevent", "attributes that are not strings")
    return event


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
        self._failures = _Failures(metrics, health or Health(), backoff)
        self.relayed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; a failure restarts the relay after a backoff, and never ends the bridge."""
        while not stop.is_set():
            try:
                await self._consume(stop)
            except KafkaClientError as exc:
                unread = KafkaDeliveryError(f"cannot read the events topics from Kafka ({exc.cause!r})")
                await _pause(stop, self._failures.failed("kafka", unread, "restarting the relay"))
            except Exception as exc:  # whatever else goes wrong in the relay, the poll loop goes on
                crash = SinkError(f"failed unexpectedly ({exc!r})")
                await _pause(stop, self._failures.failed("mqtt_relay", crash, "restarting the relay", unexpected=True))

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = committed_reader(
            self._kafka, group=self._group, max_poll_interval_ms=NEVER_EVICT_MS, metadata_max_age_ms=METADATA_MAX_AGE_MS
        )
        try:
            await consumer.start()
            consumer.subscribe(pattern=events_pattern(self._kafka.topics.events))
            while not stop.is_set():
                await self._relay_once(consumer, stop)
        finally:
            await consumer.stop()

    async def _relay_once(self, consumer: Consumer, stop: asyncio.Event) -> None:
        batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_RECORDS)
        self._failures.recovered()
        if not batches:
            return
        events = self._decoded(batches)
        if not await self._published(events, stop):
            return
        offsets = {partition: messages[-1].offset + 1 for partition, messages in batches.items()}
        try:
            await consumer.commit(offsets)
        except KafkaClientError as exc:
            log.warning("MQTT relay could not commit its offsets (%s); those events will be relayed again", exc.cause)
        self.relayed += len(events)
        self._metrics.mqtt_relayed.inc(len(events))
        self._metrics.mqtt_relay_lag.set(_lag(consumer, offsets))

    def _decoded(self, batches: dict[Partition, list[ConsumedRecord]]) -> list[CloudEvent]:
        """The CloudEvents of a fetch; the records that are not are counted, logged once per fetch, and skipped."""
        events: list[CloudEvent] = []
        skipped: list[tuple[ConsumedRecord, Skipped]] = []
        for message in (m for messages in batches.values() for m in messages):
            decoded = decode_record(message.headers, message.value)
            if isinstance(decoded, Skipped):
                skipped.append((message, decoded))
                self._metrics.mqtt_relay_skipped.labels(decoded.reason).inc()
            else:
                events.append(decoded)
        if skipped:
            first, why = skipped[0]
            log.warning(
                "MQTT relay skipped %d records that are not the bridge's CloudEvents (first: %s partition %d "
                "offset %d, %s); only the bridge should write to its events topics",
                *(len(skipped), first.topic, first.partition, first.offset, why.detail),
            )
        return events

    async def _published(self, events: list[CloudEvent], stop: asyncio.Event) -> bool:
        """Retry until the broker acknowledged every event; False when stopped first (nothing is committed)."""
        while not stop.is_set():
            try:
                await self._publisher.publish(events)
            except MqttDeliveryError as error:
                await _pause(stop, self._failures.failed(error.kind, error, f"retrying {len(events)} events"))
                continue
            self._failures.recovered()
            return True
        return False


class _Failures:
    """The relay's run of failures: each counted by kind and reported to health, logged at WARNING when the run
    starts or changes kind (repeats at DEBUG), and at INFO when it ends."""

    def __init__(self, metrics: Metrics, health: Health, backoff: Backoff) -> None:
        self._metrics = metrics
        self._health = health
        self._backoff = backoff
        self._kind: str | None = None

    def failed(self, kind: str, error: SinkError, next_step: str, *, unexpected: bool = False) -> float:
        """Count a failure; returns the backoff delay before ``next_step`` (the longest for an error the retry
        policy gives up on: the relay never ends the bridge)."""
        reason = str(error)
        self._metrics.errors.labels(kind).inc()
        self._health.sink_failed(HEALTH_NAME, reason)
        delay = retry_delay(error, self._backoff)
        if delay is None:
            delay = self._backoff.longest()
        level = logging.WARNING if kind != self._kind else logging.DEBUG
        self._kind = kind
        log.log(
            level,
            "MQTT relay: %s; %s in %.1f s",
            reason,
            next_step,
            delay,
            exc_info=unexpected and level == logging.WARNING,
        )
        return delay

    def recovered(self) -> None:
        """The relay's last step succeeded: the run of failures, if any, is over."""
        if self._kind is None:
            return
        log.info("MQTT relay recovered after %d failed attempts", self._backoff.failures)
        self._kind = None
        self._backoff.reset()
        self._health.sink_succeeded(HEALTH_NAME)


async def _pause(stop: asyncio.Event, delay: float) -> None:
    """Wait ``delay`` seconds, or less when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


def _lag(consumer: Consumer, offsets: dict[Partition, int]) -> int:
    lag = 0
    for partition, position in offsets.items():
        highwater = consumer.highwater(partition)
        if highwater is not None:
            lag += max(0, highwater - position)
    return lag
