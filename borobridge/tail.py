"""``borobridge tail``: follow the committed alarm events in Kafka, as readable lines or JSON.

Events topics are found by the events template; topics that appear while tail runs (a project's first event)
are picked up every ``DISCOVERY_INTERVAL`` seconds and read from their beginning, so nothing of them is missed.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TextIO, get_args

import msgspec

from borobridge.errors import BridgeError, KafkaClientError
from borobridge.events import CloudEvent, from_kafka_record
from borobridge.kafka.admin import Admin
from borobridge.kafka.connection import connection_hint, tls_problem
from borobridge.kafka.consumer import Consumer, committed_reader
from borobridge.kafka.records import ConsumedRecord, Partition
from borobridge.mqtt_relay import events_pattern
from borobridge.settings import KafkaSettings, Level

log = logging.getLogger(__name__)

SEVERITIES: Final = get_args(Level)  # in order of severity
DISCOVERY_INTERVAL: Final = 5.0
POLL_MS: Final = 500
_ENCODER: Final = msgspec.json.Encoder()

Format = Literal["line", "json", "cloudevent"]


@dataclass(frozen=True)
class TailFilter:
    """Which events to show; None shows all. ``level`` is a minimum: that severity or worse."""

    project: str | None = None
    task: str | None = None
    level: str | None = None

    def accepts(self, event: CloudEvent) -> bool:
        """True when the event matches every given criterion; a severity tail does not know always passes."""
        attributes = event.attributes
        return (
            self.project in (None, attributes["project"])
            and self.task in (None, attributes["task"])
            and (self.level is None or _rank(attributes["severity"]) >= _rank(self.level))
        )


@dataclass(frozen=True)
class TailOptions:
    """Where to start (the end, the beginning, or ``since`` Unix seconds), when to stop, and how to print."""

    from_beginning: bool = False
    since: float | None = None
    limit: int | None = None
    idle_exit: float | None = None
    format: Format = "line"


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def render(event: CloudEvent) -> str:
    """``time severity transition project/task group/subject [duration] id``; the id always comes last."""
    attributes = event.attributes
    transition = event.transition.value
    duration = msgspec.json.decode(event.data).get("duration_seconds")
    lasted = f" ({duration:.1f} s)" if duration is not None else ""
    return (
        f"{attributes['time']}  {attributes['severity']:<7} {transition:<7} {attributes['partitionkey']:<16} "
        f"{attributes['triggergroup']}/{attributes['subject']}{lasted}  {attributes['id']}"
    )


def render_json(message: ConsumedRecord, event: CloudEvent) -> str:
    """The Kafka record (topic, partition, offset, timestamp, key, headers) with the event, as one JSON line."""
    record = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp,
        "key": message.key.decode(errors="replace") if message.key is not None else None,
        "headers": {name: value.decode(errors="replace") for name, value in message.headers},
        "event": msgspec.Raw(event.structured()),
    }
    return _ENCODER.encode(record).decode()


_RENDERERS: Final[dict[str, Callable[[ConsumedRecord, CloudEvent], str]]] = {
    "line": lambda _, event: render(event),
    "json": render_json,
    "cloudevent": lambda _, event: event.structured().decode(),
}


async def tail(settings: KafkaSettings, chosen: TailFilter, options: TailOptions, out: TextIO = sys.stdout) -> int:
    """Print matching events until ``limit`` are shown or nothing arrived for ``idle_exit`` seconds."""
    admin = Admin(settings)
    consumer = committed_reader(settings)
    try:
        await _start(settings, admin, consumer)
        follower = _Follower(settings, admin, consumer)
        await follower.begin(options)
        return await _follow(follower, chosen, options, out)
    finally:
        await consumer.stop()
        await admin.close()


async def _start(settings: KafkaSettings, admin: Admin, consumer: Consumer) -> None:
    try:
        await admin.start()
        await consumer.start()
    except KafkaClientError as exc:
        problem = await tls_problem(settings)
        raise BridgeError(f"cannot read Kafka: {problem or f'{exc.cause}; {connection_hint(settings)}'}") from exc


async def _follow(follower: _Follower, chosen: TailFilter, options: TailOptions, out: TextIO) -> int:
    render_one = _RENDERERS[options.format]
    limit, shown = options.limit, 0
    last_event = time.monotonic()
    while limit is None or shown < limit:
        if options.idle_exit is not None and time.monotonic() - last_event >= options.idle_exit:
            break
        batches = await follower.consumer.getmany(timeout_ms=POLL_MS)
        if batches:
            last_event = time.monotonic()
        for messages in batches.values():
            for message in messages:
                event = _decoded(message)
                if event is not None and chosen.accepts(event) and (limit is None or shown < limit):
                    print(render_one(message, event), file=out, flush=True)
                    shown += 1
        await follower.discover()
    return shown


def _decoded(message: ConsumedRecord) -> CloudEvent | None:
    """The record's CloudEvent, or None (with one line naming it) for a record the bridge did not write."""
    try:
        return from_kafka_record(message.headers or [], message.value or b"")
    except (ValueError, KeyError, msgspec.DecodeError) as exc:
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.warning("skipping record %s: not a borobridge CloudEvent (%s)", where, exc)
        return None


class _Follower:
    """The consumer's assignment: every partition of every events topic, growing as topics appear."""

    def __init__(self, settings: KafkaSettings, admin: Admin, consumer: Consumer) -> None:
        self.consumer = consumer
        self._admin = admin
        self._pattern = re.compile(events_pattern(settings.topics.events))
        self._partitions: list[Partition] = []
        self._next_discovery = 0.0

    async def begin(self, options: TailOptions) -> None:
        """Assign the topics there are now and seek to where the options say."""
        partitions = await self._events_partitions()
        self._assign(partitions)
        if not partitions:
            log.info("no events topic yet; waiting for the first one")
        elif options.from_beginning:
            await self.consumer.seek_to_beginning(*partitions)
        elif options.since is not None:
            await self._seek_to_time(partitions, options.since)
        else:
            await self.consumer.seek_to_end(*partitions)
        topics = len({partition.topic for partition in partitions})
        log.info("following %d events topics (%d partitions)", topics, len(partitions))
        self._next_discovery = time.monotonic() + DISCOVERY_INTERVAL

    async def discover(self) -> None:
        """Every DISCOVERY_INTERVAL, add the partitions of new events topics, read from their beginning."""
        if time.monotonic() < self._next_discovery:
            return
        self._next_discovery = time.monotonic() + DISCOVERY_INTERVAL
        new = [partition for partition in await self._events_partitions() if partition not in self._partitions]
        if not new:
            return
        positions = {partition: await self.consumer.position(partition) for partition in self._partitions}
        self._assign(self._partitions + new)
        for partition, offset in positions.items():
            self.consumer.seek(partition, offset)
        await self.consumer.seek_to_beginning(*new)
        log.info("following %s", ", ".join(sorted({partition.topic for partition in new})))

    def _assign(self, partitions: list[Partition]) -> None:
        self._partitions = partitions
        self.consumer.assign(partitions)

    async def _seek_to_time(self, partitions: list[Partition], since: float) -> None:
        found = await self.consumer.offsets_for_times(partitions, int(since * 1000))
        later = [partition for partition, offset in found.items() if offset is None]
        for partition, offset in found.items():
            if offset is not None:
                self.consumer.seek(partition, offset)
        if later:
            await self.consumer.seek_to_end(*later)

    async def _events_partitions(self) -> list[Partition]:
        topics = sorted(name for name in await self._admin.topic_names() if self._pattern.match(name))
        return await self._admin.partitions(topics)
