"""Readiness with shards: ready only while the process holds an assignment from its shard group."""

from __future__ import annotations

from borobridge.health import Health


def healthy() -> Health:
    health = Health()
    health.mark_restored()
    health.boro_succeeded()
    health.expect_sink("kafka shard 0")
    health.sink_succeeded("kafka shard 0")
    return health


def test_not_ready_while_the_shard_group_has_assigned_nothing() -> None:
    health = healthy()
    health.group_waiting("waiting for the shard group to assign this process its shards")
    assert health.readiness() == (False, "waiting for the shard group to assign this process its shards")
    health.group_joined()
    assert health.readiness() == (True, "ok")


def test_a_rebalance_makes_the_process_unready_until_its_next_assignment() -> None:
    health = healthy()
    health.group_joined()
    health.group_waiting("a rebalance")
    assert not health.readiness()[0]
    health.group_joined()
    assert health.readiness()[0]


def test_a_shard_handed_over_no_longer_counts_for_readiness() -> None:
    health = healthy()
    health.sink_failed("kafka shard 0", "fenced")
    health.sink_bound = 0.0
    assert not health.readiness()[0]
    health.forget_sink("kafka shard 0")
    assert health.readiness() == (True, "ok")
