"""A stream's shard is the checkpoint partition Kafka's own partitioner gives its key, and never changes."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from borobridge.kafka.sharding import ShardClaim, shard_of

EXPECTED_SIMULATOR_SHARDS = [4, 3, 4, 0, 1, 3, 1, 2]  # aiokafka's DefaultPartitioner, same as the Java client
STREAMS = [f"boro.example:8080/{project}" for project in range(200)] + ["simulator/7/0123456789ab", "é/1"]


@pytest.mark.parametrize("shards", [1, 3, 6, 12])
def test_the_shard_is_the_partition_the_kafka_partitioner_chooses(shards: int) -> None:
    partitioner = DefaultPartitioner()
    partitions = list(range(shards))
    for stream in STREAMS:
        assert shard_of(stream, shards) == partitioner(stream.encode(), partitions, partitions), stream


def test_the_shard_of_a_stream_is_stable() -> None:
    """Fixed values: a change of the mapping would move every cursor to another owner's partition."""
    assert [shard_of(f"simulator/{project}", 6) for project in range(1, 9)] == EXPECTED_SIMULATOR_SHARDS


def test_the_streams_spread_over_every_shard() -> None:
    assert {shard_of(stream, 6) for stream in STREAMS} == set(range(6))


def test_a_claim_owns_the_streams_of_its_shard_only() -> None:
    claim = ShardClaim(number=2, count=6, generation=4, member="m-1")
    owned = {stream for stream in STREAMS if claim.owns(stream)}
    assert owned == {stream for stream in STREAMS if shard_of(stream, 6) == 2}
    assert dict(claim.headers()) == {
        "borobridge_shard": b"2",
        "borobridge_generation": b"4",
        "borobridge_member": b"m-1",
    }


def test_no_shard_count_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        shard_of("simulator/1", 0)
