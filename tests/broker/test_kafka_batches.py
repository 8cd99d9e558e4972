"""Records queued in per-partition batches land where ``producer.send`` puts them, in order, on a real Kafka."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from borobridge.kafka.batches import send_in_batches
from borobridge.kafka.records import KafkaRecord
from tests.support.kafka import KafkaCluster, unique_topic

pytestmark = pytest.mark.kafka

PARTITIONS = 3
BATCH_BYTES = 4_096
READ_S = 30.0


async def create_topics(bootstrap: str, *topics: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in topics])
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, count: int) -> dict[int, list[tuple[bytes | None, bytes | None]]]:
    """(key, value) of every committed record of ``topic``, by partition, in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    found: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(READ_S):
            while sum(map(len, found.values())) < count:
                for partition, messages in (await consumer.getmany(timeout_ms=500)).items():
                    found[partition.partition] += [(m.key, m.value) for m in messages]
    finally:
        await asyncio.sleep(0)  # let aiokafka's coordinator task start, or stop() re-raises its cancellation
        await consumer.stop()
    return dict(found)


async def test_batched_records_land_where_send_puts_them_in_order(kafka: KafkaCluster) -> None:
    by_send, by_batch = unique_topic("by-send"), unique_topic("by-batch")
    await create_topics(kafka.bootstrap, by_send, by_batch)
    keys = [f"23/{task}".encode() for task in range(12)]
    values = [f"{n}".encode() * (1 if n % 7 else 2_000) for n in range(120)]  # some records outgrow a batch
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, transactional_id=unique_topic("tx"), max_batch_size=BATCH_BYTES
    )
    await producer.start()
    try:
        async with producer.transaction():
            sent = [await producer.send(by_send, value, key=keys[n % len(keys)]) for n, value in enumerate(values)]
            await asyncio.gather(*sent)
        records = [KafkaRecord(by_batch, keys[n % len(keys)], value, []) for n, value in enumerate(values)]
        async with producer.transaction():
            futures = await send_in_batches(producer, records)
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert len(futures) < len(records)
    expected = await read_all(kafka.bootstrap, by_send, len(values))
    assert await read_all(kafka.bootstrap, by_batch, len(values)) == expected
    assert len(expected) > 1
