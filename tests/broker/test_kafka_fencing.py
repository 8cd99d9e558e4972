"""A second instance with the same transactional id fences the first, which stops, however the fence reaches it.

(Processes of one bridge name share its shards instead: tests/test_ha_shards.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

from borobridge.errors import FencedError
from borobridge.kafka.sink import KafkaSink
from borobridge.sinks import Batch
from tests.support.kafka import KafkaCluster
from tests.support.kafka_reading import kafka_settings

pytestmark = pytest.mark.kafka

FENCE_S = 2.0  # a metadata wait for a topic before anything is queued sees no fence: it gives up after this


@pytest.mark.parametrize("metadata", ["late", "missing"])
async def test_a_fence_met_while_a_send_waits_for_metadata_stops_the_first(
    kafka: KafkaCluster, monkeypatch: pytest.MonkeyPatch, metadata: str
) -> None:
    """aiokafka raises ProducerFenced only where a request met the fence; a send that was waiting for a new topic's
    metadata meanwhile gets IllegalOperation (late) or UnknownTopicOrPartitionError (missing). Taken for a passing
    failure, the latter made the first instance start a new producer, which fenced the second one in turn."""
    settings, prefix = kafka_settings(kafka.bootstrap)
    new_topic = f"{prefix}.new"
    records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = [
        (settings.topics.schemas, b"key", b"value", []),
        (new_topic, b"key", b"value", []),
    ]
    async with KafkaSink(settings, prefix) as first:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(new_topic, 1, 1)])
        finally:
            await admin.close()
        assert first._producer is not None
        producer = first._producer._client  # aiokafka's own, reached into to time the fence
        wait_on_metadata = producer.client._wait_on_metadata
        fenced_while_waiting: list[bool] = []

        async def after_the_fence(topic: str) -> Any:
            if topic == new_topic:
                sender = producer._sender.sender_task
                await asyncio.wait([sender], timeout=FENCE_S)  # a queued record meets the fence; the sender stops
                fenced_while_waiting.append(sender.done())
                if sender.done() and metadata == "missing":
                    raise UnknownTopicOrPartitionError
            return await wait_on_metadata(topic)

        monkeypatch.setattr(producer.client, "_wait_on_metadata", after_the_fence)
        monkeypatch.setattr(first, "_records", lambda batch: records)
        async with KafkaSink(settings, prefix) as second:
            monkeypatch.setattr(second, "_records", lambda batch: records[:1])
            with pytest.raises(FencedError, match="took over transactional id"):
                await first.deliver(Batch())
            assert any(fenced_while_waiting), "the fence did not reach the first instance while it waited for metadata"
            await second.deliver(Batch())
