"""Replicas of one bridge name share the shards through the shard group: real ``borobridge run`` processes against
the simulator, checked by an independent ``read_committed`` consumer.

Every test also checks the checkpoint records' owner headers: per shard partition, the generations never go back
(a member that lost a shard commits nothing after its successor) and one generation has one committing member.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from borobridge.checkpoint import Checkpoint
from borobridge.errors import FencedError
from borobridge.kafka.sharding import ShardClaim, shard_of
from borobridge.kafka.sink import KafkaSink
from borobridge.simulator import Simulator, serve_simulator
from borobridge.sinks import Batch
from tests.support.bridge_process import BridgeProcess
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import bridge_config, committed
from tests.support.kafka_reading import kafka_settings, partitions_of
from tests.support.pipelines import advancing

pytestmark = pytest.mark.kafka

SHARDS = 6  # the default partition count of the checkpoint topic (bridge_config sets none)
PROJECTS = 8
OWNS = re.compile(r"shard group generation (\d+): this process owns shards ([\d, ]+|none) of (\d+)")
SETTLE_S = 60.0
CATCH_UP_S = 60.0
SESSION_S = 10.0  # borobridge.kafka.group.SESSION_TIMEOUT_MS
READ_S = 30.0


def owned(process: BridgeProcess) -> tuple[int, set[int]]:
    """The latest generation this process was assigned in, and its shards then ((-1, set()) before any)."""
    found = OWNS.findall(process.said())
    if not found:
        return -1, set()
    generation, shards, _ = found[-1]
    return int(generation), set() if shards == "none" else {int(s) for s in shards.split(", ")}


async def until(condition: Any, seconds: float, why: str, processes: list[BridgeProcess]) -> None:
    """Wait (bounded, polling every 0.2 s) until ``condition()`` holds; fail saying ``why`` and the logs."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"--- {p.log.name}\n{p.said()[-4000:]}" for p in processes)
            pytest.fail(f"{why} within {seconds:.0f} s\n{logs}")
        await asyncio.sleep(0.2)


def settled(processes: list[BridgeProcess], count: int = SHARDS) -> bool:
    """Every running process was assigned in one generation, and together they own every shard exactly once."""
    latest = [owned(p) for p in processes]
    generations = {generation for generation, _ in latest}
    shards = [shard for _, mine in latest for shard in mine]
    return len(generations) == 1 and -1 not in generations and sorted(shards) == list(range(count))


async def checkpoint_owners(bootstrap: str, topic: str) -> dict[int, list[tuple[int, str]]]:
    """(generation, member) of every committed checkpoint record, per partition in log order."""
    partitions = await partitions_of(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    owners: dict[int, list[tuple[int, str]]] = defaultdict(list)
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(READ_S):
            while [p for p in partitions if await consumer.position(p) < ends[p]]:
                for partition, messages in (await consumer.getmany(timeout_ms=500)).items():
                    for message in messages:
                        headers = dict(message.headers)
                        if "borobridge_generation" in headers:
                            generation = int(headers["borobridge_generation"])
                            owners[partition.partition].append((generation, headers["borobridge_member"].decode()))
    finally:
        await asyncio.sleep(0)  # let aiokafka's coordinator task start, or stop() re-raises its cancellation
        await consumer.stop()
    return dict(owners)


def assert_one_owner_per_generation(owners: dict[int, list[tuple[int, str]]]) -> None:
    """Per shard: generations never go back in the log, and each generation's records come from one member."""
    assert owners, "no checkpoint record names its owner"
    for shard, records in owners.items():
        generations = [generation for generation, _ in records]
        assert generations == sorted(generations), f"shard {shard}: an earlier owner committed after a later one"
        members: dict[int, set[str]] = defaultdict(set)
        for generation, member in records:
            members[generation].add(member)
        shared = {generation: names for generation, names in members.items() if len(names) > 1}
        assert not shared, f"shard {shard}: two owners committed in one generation: {shared}"


def committed_after(owners: dict[int, list[tuple[int, str]]], generation: int) -> set[int]:
    """The shards with a checkpoint committed in a generation later than ``generation``."""
    return {shard for shard, records in owners.items() if any(g > generation for g, _ in records)}


class Replicas:
    """``borobridge run`` processes with one configuration (one bridge name), each logging to its own file."""

    def __init__(self, config: Path, directory: Path) -> None:
        self._config = config
        self._directory = directory
        self.all: list[BridgeProcess] = []

    async def start(self) -> BridgeProcess:
        index = len(self.all)
        process = BridgeProcess(
            ["--config", str(self._config)], self._directory / f"replica{index}.log", self._directory
        )
        await process.start()
        self.all.append(process)
        return process

    @property
    def running(self) -> list[BridgeProcess]:
        return [p for p in self.all if not p.ended]

    async def stop_all(self) -> None:
        for process in self.all:
            if process.process is not None and process.process.returncode is None:
                os.kill(process.process.pid, signal.SIGCONT)  # a stopped one must see the SIGTERM
            await process.stop()
        for process in self.all:
            print(f"--- {process.log.name}\n{process.said()}", file=sys.stderr)


@asynccontextmanager
async def replicas_of_one_bridge(
    kafka: KafkaCluster, tmp_path: Path, seed: int
) -> AsyncIterator[tuple[Replicas, Simulator, str, str]]:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=seed, projects=PROJECTS, rate_per_second=20)
    async with serve_simulator(sim) as url:
        replicas = Replicas(bridge_config(tmp_path, url, settings, prefix), tmp_path)
        try:
            yield replicas, sim, prefix, settings.topics.checkpoints
        finally:
            await replicas.stop_all()


async def all_committed(kafka: KafkaCluster, prefix: str, sim: Simulator, replicas: Replicas) -> list[dict[str, Any]]:
    """Wait (bounded) until every transition of the standing world is committed; the committed events."""
    expected = expected_ids(sim)
    deadline = asyncio.get_running_loop().time() + CATCH_UP_S
    while True:
        events = await committed(kafka.bootstrap, prefix, sim)
        if {event["id"] for event in events} >= expected or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_sigkill_of_one_of_three_moves_its_shards_and_keeps_exactly_once(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    async with replicas_of_one_bridge(kafka, tmp_path, seed=51) as (replicas, sim, prefix, checkpoints):
        async with advancing(sim, every=0.2):
            for _ in range(3):
                await replicas.start()
            await until(
                lambda: settled(replicas.running), SETTLE_S, "three replicas did not share the shards", replicas.all
            )
            generation, victims = owned(replicas.all[0])
            assert victims, "the first replica owns no shard"
            await asyncio.sleep(1.0)  # a cycle or more committed by each owner
            await replicas.all[0].kill()
            await until(
                lambda: settled(replicas.running) and owned(replicas.running[0])[0] > generation,
                SETTLE_S,
                "the killed replica's shards did not move",
                replicas.all,
            )
            deadline = asyncio.get_running_loop().time() + CATCH_UP_S
            while asyncio.get_running_loop().time() < deadline:  # the world moves on: moved shards commit anew
                owners = await checkpoint_owners(kafka.bootstrap, checkpoints)
                if victims & set(owners) and victims & set(owners) <= committed_after(owners, generation):
                    break
                await asyncio.sleep(0.5)
        events = await all_committed(kafka, prefix, sim, replicas)
        owners = await checkpoint_owners(kafka.bootstrap, checkpoints)
    moved = victims & set(owners)  # the killed replica's shards that hold streams (a shard may hold none)
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert_one_owner_per_generation(owners)
    assert moved, "the killed replica owned no shard with streams: nothing moved"
    assert moved <= committed_after(owners, generation), "the killed replica's shards committed nothing afterwards"


@pytest.mark.slow
async def test_a_replica_paused_past_its_session_commits_nothing_stale_and_rejoins(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    async with replicas_of_one_bridge(kafka, tmp_path, seed=52) as (replicas, sim, prefix, checkpoints):
        async with advancing(sim, every=0.2):
            paused, other = await replicas.start(), await replicas.start()
            await until(
                lambda: settled(replicas.running), SETTLE_S, "two replicas did not share the shards", replicas.all
            )
            generation, _ = owned(paused)
            assert paused.process is not None
            os.kill(paused.process.pid, signal.SIGSTOP)
            await until(
                lambda: owned(other)[1] == set(range(SHARDS)),
                SESSION_S + SETTLE_S,
                "the other replica did not take every shard",
                replicas.all,
            )
            await asyncio.sleep(2.0)  # the new owners commit while the paused one still holds its round
            os.kill(paused.process.pid, signal.SIGCONT)
            await until(
                lambda: settled(replicas.running) and owned(paused)[0] > generation,
                SETTLE_S,
                "the paused replica did not rejoin",
                replicas.all,
            )
            await asyncio.sleep(1.0)
        events = await all_committed(kafka, prefix, sim, replicas)
        owners = await checkpoint_owners(kafka.bootstrap, checkpoints)
        assert not paused.ended, f"the paused replica ended:\n{paused.said()}"
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert_one_owner_per_generation(owners)


@pytest.mark.slow
async def test_scaling_one_to_three_to_one_loses_and_repeats_nothing(kafka: KafkaCluster, tmp_path: Path) -> None:
    async with replicas_of_one_bridge(kafka, tmp_path, seed=53) as (replicas, sim, prefix, checkpoints):
        async with advancing(sim, every=0.2):
            first = await replicas.start()
            await until(
                lambda: settled(replicas.running), SETTLE_S, "one replica did not own every shard", replicas.all
            )
            await asyncio.sleep(1.0)
            added = [await replicas.start(), await replicas.start()]
            await until(
                lambda: len(replicas.running) == 3 and settled(replicas.running),
                SETTLE_S,
                "three replicas did not share the shards",
                replicas.all,
            )
            await asyncio.sleep(1.0)
            for process in added:
                assert await process.stop() == 0, process.said()
            await until(
                lambda: owned(first)[1] == set(range(SHARDS)),
                SETTLE_S,
                "one replica did not take all back",
                replicas.all,
            )
            await asyncio.sleep(1.0)
        events = await all_committed(kafka, prefix, sim, replicas)
        owners = await checkpoint_owners(kafka.bootstrap, checkpoints)
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert_one_owner_per_generation(owners)
    assert len({generation for records in owners.values() for generation, _ in records}) >= 3, owners


@pytest.mark.slow
async def test_a_replica_fences_an_instance_that_writes_without_shards(kafka: KafkaCluster, tmp_path: Path) -> None:
    """An instance of the earlier layout (transactional id ``borobridge-<name>``) cannot commit once a replica of
    the sharded layout has started: the two would otherwise write the same streams side by side."""
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=54, projects=2, rate_per_second=10)
    async with serve_simulator(sim) as url, KafkaSink(settings, prefix) as unsharded:
        await unsharded.restore()
        replicas = Replicas(bridge_config(tmp_path, url, settings, prefix), tmp_path)
        try:
            replica = await replicas.start()
            shards = settings.topics.partitions  # the test's sink created the checkpoint topic
            await until(lambda: settled([replica], shards), SETTLE_S, "the replica did not own every shard", [replica])
            with pytest.raises(FencedError, match=f"took over transactional id 'borobridge-{prefix}'"):
                await unsharded.deliver(Batch(checkpoints=[Checkpoint(stream="old/1", update_token=5)]))
        finally:
            await replicas.stop_all()


async def test_cursors_of_the_unsharded_layout_are_restored_by_their_shard(kafka: KafkaCluster) -> None:
    """Checkpoints written without shards sit in the partition of their shard: each shard restores exactly its own."""
    settings, prefix = kafka_settings(kafka.bootstrap)
    streams = [f"boro.example:443/{project}" for project in range(40)]
    async with KafkaSink(settings, prefix) as unsharded:
        await unsharded.restore()
        await unsharded.deliver(Batch(checkpoints=[Checkpoint(stream=s, update_token=7) for s in streams]))
    count = settings.topics.partitions
    restored: dict[int, set[str]] = {}
    for shard in range(count):
        claim = ShardClaim(number=shard, count=count, generation=1, member="test")
        async with KafkaSink(settings, prefix, claim=claim) as sink:
            restored[shard] = set(await sink.restore())
    assert restored == {shard: {s for s in streams if shard_of(s, count) == shard} for shard in range(count)}
    assert set().union(*restored.values()) == set(streams)
