"""Replicas of one bridge name share the shards through the shard group: real ``borobridge run`` processes against
the simulator, checked by an independent ``read_committed`` consumer.

Every test also checks the checkpoint records' owner headers: per shard partition, the generations never go back
(a member that lost a shard commits nothing after its successor) and one generation has one committing member.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from borobridge.checkpoint import Checkpoint
from borobridge.errors import FencedError
from borobridge.kafka.sharding import ShardClaim, shard_of
from borobridge.kafka.sink import KafkaSink
from borobridge.simulator import serve_simulator
from borobridge.sinks import Batch
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.ha import (
    SESSION_S,
    SETTLE_S,
    SHARDS,
    Replicas,
    all_committed,
    assert_one_owner_per_generation,
    checkpoint_owners,
    committed_after,
    owned,
    replicas_of_one_bridge,
    settled,
    until,
    until_committed_anew,
)
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import bridge_config
from tests.support.kafka_reading import kafka_settings
from tests.support.pipelines import advancing

pytestmark = pytest.mark.kafka


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
            await until_committed_anew(kafka.bootstrap, checkpoints, victims, generation)  # the world moves on
        events = await all_committed(kafka, prefix, sim)
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
        events = await all_committed(kafka, prefix, sim)
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
        events = await all_committed(kafka, prefix, sim)
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
