"""The Kafka checkpoint store: the cursors read from the checkpoint topic, written with each round, and what the
sink knows it committed, checked against what the topic says.

A new producer takes the transactional id back from whichever instance holds it (aiokafka asks for a producer id
without an epoch, so the broker cannot tell a stale instance from a live one), and a commit the bridge gave up
on may still complete at the broker. Before a new producer sends anything, the sink re-reads the committed
cursors and compares them with these: the same means nothing happened meanwhile; the cursors of the round given
up on mean that round was committed after all; anything else means another instance moved them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from borobridge.checkpoint import Checkpoint
from borobridge.errors import FencedError
from borobridge.kafka.consumer import Consumer, committed_reader
from borobridge.kafka.records import Headers, KafkaRecord, Partition
from borobridge.kafka.topics import TopicManager
from borobridge.settings import KafkaSettings

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS: Final = 500
_DECODER: Final = msgspec.json.Decoder(Checkpoint)
_ENCODER: Final = msgspec.json.Encoder()


async def committed_checkpoints(
    settings: KafkaSettings, topics: TopicManager, seconds: float, *, shard: int | None = None
) -> dict[str, Checkpoint]:
    """The checkpoint topic (only partition ``shard``, when given) read to its end (read_committed) by a consumer
    of its own; the latest record of each stream wins. TimeoutError past ``seconds``."""
    consumer = committed_reader(settings)
    try:
        async with asyncio.timeout(seconds):
            await consumer.start()
            return await _read_to_end(consumer, settings.topics.checkpoints, topics, shard)
    finally:
        await consumer.stop_quietly()


def checkpoint_records(topic: str, checkpoints: Iterable[Checkpoint], headers: Headers = ()) -> list[KafkaRecord]:
    """The records that write ``checkpoints``, keyed by stream, each with ``headers`` (aiokafka takes lists only)."""
    return [KafkaRecord(topic, c.stream.encode(), _ENCODER.encode(c), list(headers)) for c in checkpoints]


async def _read_to_end(
    consumer: Consumer, topic: str, topics: TopicManager, shard: int | None
) -> dict[str, Checkpoint]:
    partitions = [Partition(topic, p) for p in await topics.partitions(topic) if shard in (None, p)]
    if not partitions:
        return {}
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    latest: dict[str, Checkpoint] = {}
    while await _behind(consumer, ends):
        for records in (await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)).values():
            for record in records:
                _keep_latest(latest, record.value)
    log.info("read %d checkpoints from %s", len(latest), topic)
    return latest


async def _behind(consumer: Consumer, ends: dict[Partition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return True
    return False


def _keep_latest(latest: dict[str, Checkpoint], value: bytes | None) -> None:
    if not value:
        return
    try:
        checkpoint = _DECODER.decode(value)
    except msgspec.DecodeError:
        log.warning("skipping an unreadable checkpoint record: %r", value[:200])
        return
    latest[checkpoint.stream] = checkpoint


class CommittedCursors:
    """The checkpoint of each stream as this instance last read or committed it, and the round in doubt."""

    def __init__(self) -> None:
        self._known: dict[str, Checkpoint] | None = None  # None: never restored, nothing to compare with
        self._in_doubt: dict[str, Checkpoint] = {}

    @property
    def tracked(self) -> bool:
        """The cursors were restored: a re-read can be compared with them."""
        return self._known is not None

    def restored(self, found: Mapping[str, Checkpoint]) -> None:
        """The cursors as read from the checkpoint topic (read_committed, to its end)."""
        self._known = dict(found)
        self._in_doubt = {}

    def committed(self, checkpoints: Iterable[Checkpoint]) -> None:
        """The broker confirmed a round that wrote these checkpoints."""
        if self._known is not None:
            self._known |= {checkpoint.stream: checkpoint for checkpoint in checkpoints}
        self._in_doubt = {}

    def given_up(self, checkpoints: Iterable[Checkpoint]) -> None:
        """A round that wrote these checkpoints failed without a confirmation: its commit may still complete."""
        self._in_doubt = {checkpoint.stream: checkpoint for checkpoint in checkpoints}

    def adopt(self, found: Mapping[str, Checkpoint], bridge_name: str) -> bool:
        """Take ``found`` (a fresh re-read) as committed; True when it holds the round in doubt.

        Raises FencedError when another instance moved a cursor: this one's rounds are stale.
        """
        if self._known is None:
            return False
        doubt = self._in_doubt
        went_through = bool(doubt) and all(found.get(stream) == checkpoint for stream, checkpoint in doubt.items())
        expected = self._known | doubt if went_through else self._known
        for stream in sorted(expected.keys() | found.keys()):
            if found.get(stream) != expected.get(stream):
                raise FencedError(
                    f"another borobridge instance named {bridge_name!r} moved the cursor of stream {stream!r}; "
                    "this one stops"
                )
        self.restored(found)
        return went_through
