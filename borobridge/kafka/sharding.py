"""Which shard a stream belongs to, and who owns a shard while it commits.

A shard is a partition of the checkpoint topic: a stream's shard is the partition Kafka's default partitioner
gives its checkpoint key (murmur2 of the stream id, sign bit cleared, modulo the partition count), so a shard's
checkpoints live in exactly one partition, and the consumer group's assignment of checkpoint partitions is shard
ownership. Cursors written before shards existed already sit in the partition of their shard: nothing moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from borobridge.kafka.batches import murmur2


def shard_of(stream: str, shards: int) -> int:
    """The shard of stream id ``stream`` among ``shards`` (the checkpoint topic's partition count)."""
    if shards < 1:
        raise ValueError(f"the shard count must be positive, not {shards}")
    return (murmur2(stream.encode()) & 0x7FFFFFFF) % shards


@dataclass(frozen=True, slots=True)
class ShardClaim:
    """Shard ``number`` of ``count``, owned by group member ``member`` since generation ``generation``."""

    number: int
    count: int
    generation: int
    member: str

    def owns(self, stream: str) -> bool:
        """Whether ``stream`` belongs to this shard."""
        return shard_of(stream, self.count) == self.number

    def headers(self) -> list[tuple[str, bytes]]:
        """Headers that tell, on every checkpoint record, which owner committed it and in which generation."""
        return [
            ("borobridge_shard", str(self.number).encode()),
            ("borobridge_generation", str(self.generation).encode()),
            ("borobridge_member", self.member.encode()),
        ]
