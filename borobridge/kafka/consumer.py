"""The one way the bridge reads Kafka: a ``read_committed`` consumer without auto-commit, behind a typed adapter.

Restoring the cursors, the MQTT relay and ``borobridge tail`` all read with it. Every failure of the client raises
:class:`~borobridge.errors.KafkaClientError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition

from borobridge.kafka.connection import connection_options
from borobridge.kafka.errors import translated
from borobridge.kafka.records import ConsumedRecord, Partition
from borobridge.kafka.tasks import stop_quietly
from borobridge.settings import KafkaSettings


def committed_reader(
    settings: KafkaSettings,
    *,
    group: str | None = None,
    max_poll_interval_ms: int | None = None,
    metadata_max_age_ms: int | None = None,
) -> Consumer:
    """A consumer of what Kafka committed; with a ``group``, one that starts at the earliest uncommitted offset."""
    options: dict[str, Any] = {"isolation_level": "read_committed", "enable_auto_commit": False}
    if group is not None:
        options |= {"group_id": group, "auto_offset_reset": "earliest"}
    if max_poll_interval_ms is not None:
        options["max_poll_interval_ms"] = max_poll_interval_ms
    if metadata_max_age_ms is not None:
        options["metadata_max_age_ms"] = metadata_max_age_ms
    return Consumer(AIOKafkaConsumer(**options, **connection_options(settings)))


class Consumer:
    """A consumer; ``async with`` starts and stops it."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to the cluster (and join the group, if any)."""
        with translated():
            await self._client.start()

    async def stop(self) -> None:
        """Leave the group and close the connections."""
        await asyncio.sleep(0)  # aiokafka re-raises the cancellation of a coordinator task that never ran
        with translated():
            await self._client.stop()

    async def stop_quietly(self) -> None:
        """Stop a consumer that may have failed; whatever the stop meets, the connections are closed."""
        await asyncio.sleep(0)  # aiokafka re-raises the cancellation of a coordinator task that never ran
        await stop_quietly(self._client.stop, self._client._client.close)  # its connections: no public view

    def assign(self, partitions: list[Partition]) -> None:
        """Read exactly these partitions."""
        self._client.assign(_client_partitions(partitions))

    def subscribe(self, pattern: str) -> None:
        """Read every topic whose name matches ``pattern``, the partitions shared within the group."""
        self._client.subscribe(pattern=pattern)

    async def seek_to_beginning(self, *partitions: Partition) -> None:
        """Read these partitions from their first record."""
        with translated():
            await self._client.seek_to_beginning(*_client_partitions(partitions))

    async def seek_to_end(self, *partitions: Partition) -> None:
        """Read these partitions from the next record written."""
        with translated():
            await self._client.seek_to_end(*_client_partitions(partitions))

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset``."""
        self._client.seek(TopicPartition(*partition), offset)

    async def position(self, partition: Partition) -> int:
        """The offset of the next record read from ``partition``."""
        with translated():
            position: int = await self._client.position(TopicPartition(*partition))
        return position

    async def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int]:
        """The offset after the last committed record of each partition."""
        with translated():
            ends = await self._client.end_offsets(_client_partitions(partitions))
        return {Partition(*partition): offset for partition, offset in ends.items()}

    async def offsets_for_times(self, partitions: list[Partition], millis: int) -> dict[Partition, int | None]:
        """The first offset of each partition at or after ``millis`` (Unix ms); None where there is none yet."""
        with translated():
            found = await self._client.offsets_for_times({TopicPartition(*p): millis for p in partitions})
        return {Partition(*partition): None if at is None else at.offset for partition, at in found.items()}

    async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[Partition, list[ConsumedRecord]]:
        """The records fetched within ``timeout_ms``, by partition, in order; empty when none arrived."""
        with translated():
            batches = await self._client.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {Partition(*partition): [_record(m) for m in messages] for partition, messages in batches.items()}

    async def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit the group's offsets: the next record to read of each partition."""
        with translated():
            await self._client.commit({TopicPartition(*partition): at for partition, at in offsets.items()})

    def highwater(self, partition: Partition) -> int | None:
        """The offset after the last record of ``partition`` as last fetched; None before the first fetch."""
        highwater: int | None = self._client.highwater(TopicPartition(*partition))
        return highwater


def _client_partitions(partitions: Iterable[Partition]) -> list[Any]:
    return [TopicPartition(*partition) for partition in partitions]


def _record(message: Any) -> ConsumedRecord:
    return ConsumedRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
        key=message.key,
        value=message.value,
        headers=message.headers,
    )
