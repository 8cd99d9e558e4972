"""A second instance with the same name fences the first, which stops, however the fence reaches it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

from borobridge.delivery import Batch
from borobridge.errors import FencedError
from borobridge.kafka.sink import KafkaSink
from borobridge.simulator import serve_simulator
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import FENCED_EXIT_S, bridge_config, committed, wait_for_committed
from tests.support.kafka_reading import kafka_settings
from tests.support.pipelines import advancing
from tests.support.processes import bridge_process, stop

pytestmark = pytest.mark.kafka

FENCE_S = 2.0  # a metadata wait for a topic before anything is queued sees no fence: it gives up after this


@pytest.mark.slow
async def test_a_second_process_fences_the_first_and_carries_on(kafka: KafkaCluster, tmp_path: Path) -> None:
    """Two ``borobridge run`` with one name: the first exits non-zero saying why, the second delivers the rest once."""
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=41, projects=2, rate_per_second=10)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    fenced_exit: int | None = None
    async with serve_simulator(sim) as url:
        config = bridge_config(tmp_path, url, settings, prefix)
        first = await bridge_process(config, first_log)
        second: asyncio.subprocess.Process | None = None
        try:
            async with advancing(sim, every=0.2):
                before = await wait_for_committed(kafka.bootstrap, prefix, sim, first)
                assert before, f"the first process committed nothing:\n{first_log.read_text()}"
                assert first.returncode is None, f"the first process ended early:\n{first_log.read_text()}"
                second = await bridge_process(config, second_log)
                try:
                    async with asyncio.timeout(FENCED_EXIT_S):
                        fenced_exit = await first.wait()
                except TimeoutError:
                    pytest.fail(f"the first process still runs {FENCED_EXIT_S:.0f} s after the second started")
                at_fence = {event["id"] for event in await committed(kafka.bootstrap, prefix, sim)}
                await asyncio.sleep(3)  # the world moves on with only the second process polling
            expected = expected_ids(sim)
            events = await wait_for_committed(kafka.bootstrap, prefix, sim, second, until=expected)
            assert second.returncode is None, "the second process ended"
        finally:
            first_exit = await stop(first)
            second_exit = None if second is None else await stop(second)
            print(f"first ({first_exit}):\n{first_log.read_text()}\nsecond ({second_exit}):", file=sys.stderr)
            print(second_log.read_text() if second_log.exists() else "not started", file=sys.stderr)
    first_said = first_log.read_text()
    assert fenced_exit not in (None, 0), first_said
    assert "took over transactional id" in first_said, first_said
    assert second_exit == 0
    assert "took over transactional id" not in second_log.read_text()
    assert {event["id"] for event in events} - at_fence, "nothing committed after the first process was fenced"
    assert_exactly_once_in_order(events, sim, expected)


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
