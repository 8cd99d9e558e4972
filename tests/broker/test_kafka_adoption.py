"""A new producer (after a timeout or a failure that is not a fence) first adopts what Kafka committed meanwhile.

A commit the bridge gave up on may still complete at the broker, and a replaced producer takes the transactional
id back from whichever instance took it over meanwhile (aiokafka asks for a producer id without an epoch): both
would send a round again that read_committed consumers already saw. The broker is paused (SIGSTOP) or stopped to
make the bridge give up for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from borobridge.checkpoint import Checkpoint
from borobridge.errors import CursorAheadError, FencedError, KafkaDeliveryError
from borobridge.kafka.sink import KafkaSink
from borobridge.pipeline import Pipeline
from borobridge.settings import KafkaSettings
from borobridge.simulator import Simulator, serve_simulator
from borobridge.sinks import Batch
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import event_topics, kafka_bridge_and_sink
from tests.support.kafka_reading import binary_events, consume
from tests.support.kafka_reading import kafka_settings as unique_kafka_settings

pytestmark = pytest.mark.kafka

DELIVERY_TIMEOUT_MS = 2000
REQUEST_TIMEOUT_MS = 1500
PAUSE_S = 3.0  # longer than the delivery timeout: the bridge gives up on the commit before the broker resumes
OUTAGES = 3
BACK_S = 60.0
SETTLE_S = 30.0


def kafka_settings(kafka: KafkaCluster) -> tuple[KafkaSettings, str]:
    return unique_kafka_settings(
        kafka.bootstrap, delivery_timeout_ms=DELIVERY_TIMEOUT_MS, request_timeout_ms=REQUEST_TIMEOUT_MS
    )


def broker_pid(kafka: KafkaCluster) -> int:
    return int((kafka.directory / "node-1" / "pid").read_text().strip())


@contextlib.contextmanager
def resumed_at_the_end(pid: int) -> Any:
    """Whatever happens in the block, the broker runs again after it."""
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def pause_broker_during_next_commit(sink: KafkaSink, pid: int, seconds: float) -> list[bool]:
    """Pause the broker just before the producer asks it to commit, and resume it ``seconds`` later (or never).

    The commit request waits in the broker's socket buffer: the bridge gives up on it, the broker commits it.
    """
    assert sink._producer is not None
    producer = sink._producer._client  # aiokafka's own: the one the next round is sent with
    commit = producer.commit_transaction
    paused: list[bool] = []

    async def paused_commit() -> Any:
        producer.commit_transaction = commit
        os.kill(pid, signal.SIGSTOP)
        paused.append(True)
        if seconds < math.inf:
            asyncio.get_running_loop().call_later(seconds, os.kill, pid, signal.SIGCONT)
        return await commit()

    producer.commit_transaction = paused_commit
    return paused


def repeated(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    counts = Counter((event["source"], event["id"]) for event in events)
    return [key for key, count in counts.items() if count > 1]


async def committed_events(kafka: KafkaCluster, prefix: str, sim: Simulator) -> list[dict[str, Any]]:
    return binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))


async def poll_until_complete(pipeline: Pipeline, kafka: KafkaCluster, prefix: str, sim: Simulator) -> list[Any]:
    events: list[Any] = []
    for _ in range(20):
        await pipeline.poll_once()
        events = await committed_events(kafka, prefix, sim)
        if {e["id"] for e in events} >= expected_ids(sim):
            break
    return events


async def test_a_commit_given_up_on_that_completes_at_the_broker_is_not_sent_again(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka)
    sim = simulator_with_history(5, seed=51, projects=1, rate_per_second=20)
    pid = broker_pid(kafka)
    async with serve_simulator(sim) as url, kafka_bridge_and_sink(url, settings, prefix) as (pipeline, sink):
        await pipeline.poll_once()
        sim.advance(new_records=30)
        paused = pause_broker_during_next_commit(sink, pid, PAUSE_S)
        with resumed_at_the_end(pid):
            await pipeline.poll_once()
        assert paused, "the round was committed without the broker being paused"
        events = await poll_until_complete(pipeline, kafka, prefix, sim)
    assert not repeated(events), f"transitions committed twice: {repeated(events)[:3]}"
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


async def test_a_commit_found_complete_only_after_the_round_was_rolled_back_stops_the_bridge(
    kafka: KafkaCluster,
) -> None:
    """The broker stays paused until the round was given up on (and rolled back): the commit it completes on
    resuming is found by the next round, which stops the bridge rather than send the events again; its restart
    resumes after that commit."""
    settings, prefix = kafka_settings(kafka)
    sim = simulator_with_history(5, seed=53, projects=1, rate_per_second=20)
    pid = broker_pid(kafka)
    async with serve_simulator(sim) as url:
        async with kafka_bridge_and_sink(url, settings, prefix) as (pipeline, sink):
            await pipeline.poll_once()
            sim.advance(new_records=30)
            paused = pause_broker_during_next_commit(sink, pid, math.inf)
            with resumed_at_the_end(pid):
                await pipeline.poll_once()
            assert paused, "the round was committed without the broker being paused"
            await kafka.wait_until_serving(1)
            with pytest.raises(CursorAheadError, match="was committed after all; this instance stops"):
                await poll_until_complete(pipeline, kafka, prefix, sim)
        stopped_at = await committed_events(kafka, prefix, sim)
        async with kafka_bridge_and_sink(url, settings, prefix) as (restarted, _):
            events = await poll_until_complete(restarted, kafka, prefix, sim)
    assert not repeated(stopped_at), f"transitions committed twice: {repeated(stopped_at)[:3]}"
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


async def test_a_replaced_producer_stops_when_another_instance_moved_the_cursor(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka)
    sim = simulator_with_history(5, seed=52, projects=1, rate_per_second=20)
    pid = broker_pid(kafka)
    async with serve_simulator(sim) as url, kafka_bridge_and_sink(url, settings, prefix) as (stale, _):
        await stale.poll_once()
        sim.advance(new_records=30)
        os.kill(pid, signal.SIGSTOP)
        with resumed_at_the_end(pid):
            await stale.poll_once()  # gives up on its round: a timeout, not a fence
        await kafka.wait_until_serving(1)
        async with kafka_bridge_and_sink(url, settings, prefix) as (live, _):
            await live.poll_once()
            sim.advance(new_records=30)
            await live.poll_once()
            before = await committed_events(kafka, prefix, sim)
            with pytest.raises(FencedError, match=r"moved the cursor of stream 'boro-test/\d+'; this one stops"):
                await stale.poll_once()
    after = await committed_events(kafka, prefix, sim)
    assert not repeated(after), f"transitions committed twice: {repeated(after)[:3]}"
    assert len(after) == len(before), "the stale instance committed something"


def open_sockets() -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _link(fd).startswith("socket:"))


def _link(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed since the listing
        return ""


def live_tasks() -> int:
    return len(asyncio.all_tasks())


async def eventually(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def deliver_when_back(deliver: Callable[[], Awaitable[None]]) -> None:
    """The broker serves again: delivery succeeds within a few attempts (a new producer first finds it)."""
    deadline = asyncio.get_running_loop().time() + BACK_S
    while True:
        try:
            await deliver()
        except KafkaDeliveryError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        else:
            return


@pytest.mark.slow
async def test_broker_outages_leave_no_connection_or_task_behind(kafka: KafkaCluster) -> None:
    settings, prefix = kafka_settings(kafka)
    rounds = iter(range(1_000))

    def batch() -> Batch:
        return Batch(checkpoints=[Checkpoint(stream=f"{prefix}/1", update_token=next(rounds))])

    async with KafkaSink(settings, prefix) as sink:
        await sink.restore()
        await sink.deliver(batch())
        sockets, tasks = open_sockets(), live_tasks()
        for _ in range(OUTAGES):
            await kafka.stop_node(1)
            try:
                with pytest.raises(KafkaDeliveryError):
                    await sink.deliver(batch())
            finally:
                await kafka.start_node(1)
            await deliver_when_back(lambda: sink.deliver(batch()))
        settled = await eventually(lambda: open_sockets() <= sockets and live_tasks() <= tasks, SETTLE_S)
        assert settled, f"sockets {open_sockets()} (baseline {sockets}), tasks {live_tasks()} (baseline {tasks})"
