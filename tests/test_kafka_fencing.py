"""A second instance with the same transactional id fences the first, which stops, however the fence reaches it.

(Processes of one bridge name share its shards instead: tests/test_ha_shards.py.)"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

from borobridge.delivery import Batch
from borobridge.errors import FencedError
from borobridge.kafka.sink import KafkaSink
from borobridge.simulator import Simulator
from tests.kafka_reading import binary_events, kafka_settings, partitions_of
from tests.support.kafka import KafkaCluster
from tests.test_kafka_delivery import event_topics

pytestmark = pytest.mark.kafka

FIRST_EVENTS_S = 60.0
FENCED_EXIT_S = 60.0
CATCH_UP_S = 60.0
READ_S = 30.0
STOP_S = 30.0
FENCE_S = 2.0  # a metadata wait for a topic before anything is queued sees no fence: it gives up after this


async def committed(bootstrap: str, prefix: str, sim: Simulator) -> list[dict[str, Any]]:
    """The events committed so far, read up to the last stable offsets taken at the start.

    ``tests.kafka_reading.consume`` reads until the topics go quiet, which never happens while a bridge
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


async def bridge_process(config: Path, log: Path) -> asyncio.subprocess.Process:
    """``borobridge run --config`` with its log (stderr) in a file."""
    with log.open("wb") as stderr:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "borobridge", "run", "--config", str(config), stderr=stderr
        )


async def stop(process: asyncio.subprocess.Process) -> int:
    """SIGTERM unless it ended already; SIGKILL past `STOP_S`. Returns the exit status."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_S):
            return await process.wait()
    except TimeoutError:
        process.kill()
        return await process.wait()


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
