"""The records the bridge writes to and reads from Kafka, and the partitions it names, as named types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

Headers = Sequence[tuple[str, bytes]]


class KafkaRecord(NamedTuple):
    """A record to produce; its partition follows from its key (murmur2, as Kafka's own clients choose)."""

    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone
    headers: Headers


class Partition(NamedTuple):
    """One partition of a topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """A record as a consumer fetched it; ``timestamp`` in Unix milliseconds."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers
