"""Partitioning per round: the bridge's murmur2 against aiokafka's, as a share of the round's hot path, no network.

A round here is one batched TaskAlarms reply of a world of many tasks, taken through the hot path as
``bench.hotpath`` takes it (decode, transitions, CloudEvents, Kafka records, batches queued and built). The
partitioning of a round is what ``send_in_batches`` does for it: one murmur2 per distinct (topic, key) of the
round's records (a task's events share their key; each active-table key is an alarm's own), sign bit cleared,
modulo the partition count. That work is timed alone over the round's keys, once with the bridge's
``murmur2`` and once with aiokafka's ``DefaultPartitioner`` (its pure-Python ``murmur2``), alternated, and each is
given as a share of the round's whole path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka.partitioner import DefaultPartitioner

from bench.hotpath import PARTITIONS, BridgePath, OfflineProducer, bench_settings, kafka_topics
from bench.recorded import RecordedReply, record_replies
from bench.report import Series, Table
from borobridge.kafka.batches import murmur2, send_in_batches
from borobridge.kafka.records import KafkaRecord

PROJECTS: Final = 20
PROBES_PER_PROJECT: Final = 5  # three tasks each: 300 tasks in all
ROUND_SIZES: Final = (855, 82)  # new records per round: about 1,000 and 100 transitions with the clears
KEY_REPEATS: Final = 20  # a round's keys hashed this many times per sample, for a clock well above its resolution

Partitioner = Callable[[Sequence[tuple[str, bytes]], list[int]], None]


def bridge_partitions(keys: Sequence[tuple[str, bytes]], choices: list[int]) -> None:
    """Each key's partition as ``send_in_batches`` computes it."""
    count = len(choices)
    for _, key in keys:
        choices[(murmur2(key) & 0x7FFFFFFF) % count]


def aiokafka_partitions(keys: Sequence[tuple[str, bytes]], choices: list[int]) -> None:
    """Each key's partition as aiokafka's ``DefaultPartitioner`` computes it."""
    partitioner = DefaultPartitioner()
    for _, key in keys:
        partitioner(key, choices, choices)


@dataclass(frozen=True)
class Round:
    """One round's reply and what its records need partitioned."""

    reply: RecordedReply
    transitions: int
    keys: list[tuple[str, bytes]]  # distinct (topic, key) pairs, in the order the round first meets them


async def rounds_of(replies: list[RecordedReply]) -> tuple[list[Round], list[float]]:
    """Each reply's round (transitions and distinct keys) and one timed pass of the whole path per round, in µs."""
    settings = bench_settings()
    bridge = BridgePath(settings)
    producer = OfflineProducer(kafka_topics(settings, replies))
    rounds: list[Round] = []
    micros: list[float] = []
    gc.collect()
    gc.freeze()
    try:
        for reply in replies:
            started = time.process_time()
            batch = bridge.batch(bridge.decode(reply))
            records = bridge.records(batch)
            await send_in_batches(producer.producer, records)
            producer.build_queued()
            micros.append((time.process_time() - started) * 1e6)
            rounds.append(Round(reply, len(batch.events), _distinct_keys(records)))
    finally:
        gc.unfreeze()
        await producer.close()
    return rounds, micros


def _distinct_keys(records: list[KafkaRecord]) -> list[tuple[str, bytes]]:
    return list(dict.fromkeys((record.topic, record.key) for record in records))


def partition_micros(partition: Partitioner, keys: Sequence[tuple[str, bytes]]) -> float:
    """CPU of partitioning one round's keys, in µs (the mean of ``KEY_REPEATS`` passes)."""
    choices = list(range(PARTITIONS))
    started = time.process_time()
    for _ in range(KEY_REPEATS):
        partition(keys, choices)
    return (time.process_time() - started) * 1e6 / KEY_REPEATS


async def measure(records_per_round: int, *, quick: bool) -> Table:
    """Per round: the whole path, and its partitioning by each murmur2, alternated, with their shares of it."""
    repetitions = 2 if quick else 5
    replies = record_replies(
        projects=PROJECTS,
        rounds=4 if quick else 12,
        records_per_round=records_per_round,
        probes_per_project=PROBES_PER_PROJECT,
    )
    path: list[float] = []
    ours: list[float] = []
    theirs: list[float] = []
    rounds: list[Round] = []
    for _ in range(repetitions):
        rounds, micros = await rounds_of(replies)
        path += micros[1:]  # the first round also pays for every stream's start
        for round_ in rounds[1:]:
            ours.append(partition_micros(bridge_partitions, round_.keys))
            theirs.append(partition_micros(aiokafka_partitions, round_.keys))
    measured = rounds[1:]
    transitions = statistics.median(round_.transitions for round_ in measured)
    keys = statistics.median(len(round_.keys) for round_ in measured)
    table = Table(f"partitioning per round: about {transitions:,.0f} transitions, {keys:,.0f} distinct keys")
    table.add(Series("hot path of the round", "µs/round", path))
    table.add(Series("partitioning, borobridge murmur2", "µs/round", ours), baseline="hot path of the round")
    table.add(Series("partitioning, aiokafka DefaultPartitioner", "µs/round", theirs), baseline="hot path of the round")
    table.add(
        Series("aiokafka, against borobridge murmur2", "µs/round", theirs), baseline="partitioning, borobridge murmur2"
    )
    tasks = PROJECTS * PROBES_PER_PROJECT * 3
    table.notes.append(
        f"{PROJECTS} projects, {tasks} tasks, {records_per_round} new records per round, {len(measured)} rounds "
        f"x {repetitions} passes (each pass's first round left out: it starts every stream); CPU = time.process_time"
    )
    return table


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.partitioning [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    options = parser.parse_args(argv)
    for size in ROUND_SIZES:
        asyncio.run(measure(size, quick=options.quick)).print()


if __name__ == "__main__":
    main()
