"""Replicas of one bridge name on a three-broker cluster: a broker the shard group depends on crashes together with a
replica, and the survivors take the replica's shards over exactly once, as their /metrics and an independent
``read_committed`` consumer both show."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from borobridge.kafka.group import shard_group
from tests.support.expectations import assert_exactly_once_in_order, expected_ids
from tests.support.ha import (
    SESSION_S,
    SETTLE_S,
    SHARDS,
    Samples,
    all_committed,
    assert_one_owner_per_generation,
    checkpoint_owners,
    committed_after,
    group_coordinator,
    owned,
    replicas_of_one_bridge,
    scrape,
    settled,
    until,
    until_committed_anew,
    until_every_project_committed,
)
from tests.support.kafka import KafkaCluster
from tests.support.pipelines import advancing

pytestmark = pytest.mark.kafka

POLL_S = 0.2  # the poll interval of tests.support.kafka_bridge.bridge_config
TAKEOVER_BOUND_S = SESSION_S + 3 * POLL_S


def value(samples: Samples, name: str) -> float:
    """One unlabelled sample (0 when the exposition lacks it)."""
    return samples.get((name, ()), 0.0)


@pytest.mark.slow
async def test_a_crashed_group_coordinator_and_a_killed_replica_lose_and_repeat_nothing(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    async with replicas_of_one_bridge(kafka_cluster, tmp_path, seed=61, metrics=True) as replicas_sim:
        replicas, sim, prefix, checkpoints = replicas_sim
        async with advancing(sim, every=0.2):
            for _ in range(3):
                await replicas.start()
            await until(
                lambda: settled(replicas.running), SETTLE_S, "three replicas did not share the shards", replicas.all
            )
            await until_every_project_committed(kafka_cluster, prefix, sim)  # no shard creates a topic any more
            with_streams = set(await checkpoint_owners(kafka_cluster.bootstrap, checkpoints))
            victim = next(p for p in replicas.all if owned(p)[1] & with_streams)
            survivors = [p for p in replicas.all if p is not victim]
            generation, victims = owned(victim)
            before = [await scrape(replicas.port(p)) for p in replicas.all]
            coordinator = await group_coordinator(kafka_cluster.bootstrap, shard_group(prefix))
            await asyncio.gather(kafka_cluster.stop_node(coordinator, kill=True), victim.kill())
            try:
                await until(
                    lambda: settled(survivors) and owned(survivors[0])[0] > generation,
                    SESSION_S + SETTLE_S,
                    f"the survivors did not take the killed replica's shards over while node {coordinator} was down",
                    replicas.all,
                )
                successor = await group_coordinator(kafka_cluster.bootstrap, shard_group(prefix))
            finally:
                await kafka_cluster.start_node(coordinator)
            await until_committed_anew(kafka_cluster.bootstrap, checkpoints, victims, generation)
            after = {replicas.all.index(p): await scrape(replicas.port(p)) for p in survivors}
            logged = {replicas.all.index(p): len(owned(p)[1]) for p in survivors}  # what each log says it owns
        events = await all_committed(kafka_cluster, prefix, sim)
        owners = await checkpoint_owners(kafka_cluster.bootstrap, checkpoints)
    assert successor != coordinator, "the shard group's coordinator did not move off the crashed node"
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
    assert_one_owner_per_generation(owners)
    moved = victims & with_streams
    assert moved <= committed_after(owners, generation), "the killed replica's shards committed nothing afterwards"
    assert victims <= set().union(*(owned(p)[1] for p in survivors))
    new_owner = next(p for p in survivors if owned(p)[1] & moved)  # of a moved shard that holds streams
    assert_metrics_follow_the_handover(before, after, logged, replicas.all.index(victim), replicas.all.index(new_owner))


def assert_metrics_follow_the_handover(
    before: list[Samples], after: dict[int, Samples], logged: dict[int, int], victim: int, owner: int
) -> None:
    """The gauges add up to every shard before and after, each survivor's gauge shows the shards its log says it
    owns (the victim's share among them), each survivor counted a rebalance, and the new owner of a moved shard
    timed its takeover within the session timeout."""
    owned_before = [value(samples, "borobridge_shards_owned") for samples in before]
    owned_after = {index: value(samples, "borobridge_shards_owned") for index, samples in after.items()}
    assert sum(owned_before) == SHARDS, owned_before
    assert sum(owned_after.values()) == SHARDS, owned_after
    assert owned_before[victim] > 0, owned_before
    assert owned_after == logged, (owned_after, logged)
    for index, samples in after.items():
        rebalances = value(samples, "borobridge_rebalances_total")
        assert rebalances > value(before[index], "borobridge_rebalances_total"), f"replica{index}: {rebalances}"
    count = value(after[owner], "borobridge_shard_takeover_seconds_count")
    count -= value(before[owner], "borobridge_shard_takeover_seconds_count")
    seconds = value(after[owner], "borobridge_shard_takeover_seconds_sum")
    seconds -= value(before[owner], "borobridge_shard_takeover_seconds_sum")
    assert count > 0, f"replica{owner} timed no takeover"
    assert 0 < seconds / count < TAKEOVER_BOUND_S, f"replica{owner}: {seconds:.2f} s over {count:g} takeovers"
