"""End to end: simulator over HTTP → bridge → a real Kafka with transactions, against a bare producer.

Throughput: the simulator (its own process, nothing else happening) gets a backlog of records, and the bridge
(this process, the real ``Pipeline`` and ``KafkaSink``) drains it, one transaction per round, as fast as it
can. The bare baseline then sends the very same records, encoded beforehand, with the same producer options
(linger, batch size, acks, idempotence) and one transaction per round, from a producer of its own: once with
one ``producer.send`` per record, once queued in batches the way the bridge queues them. Runs alternate.

Latency: the simulator creates records steadily, ``borobridge run`` (its own process) delivers them, and a
``read_committed`` consumer here notes when each event becomes visible; latency runs from the moment the
simulator created the record, and, as an upper bound, from the start of the simulated interval (one step)
the record stands for (see ``bench.sim_server``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.processes import REPO, SimulatorProcess, kafka_broker, machine_load, simulator_process, stop_process
from bench.report import Check, Series, Table
from borobridge.boro.client import BoroClient, PageResult
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.checkpoint import Checkpoint
from borobridge.kafka.batches import send_in_batches
from borobridge.kafka.producer import producer_options
from borobridge.kafka.records import KafkaRecord
from borobridge.kafka.sink import KafkaSink
from borobridge.pipeline import Pipeline
from borobridge.settings import load_settings
from borobridge.sinks import Batch
from tests.support.settings import boro_environ

PROJECTS: Final = 10
FIRST_PROJECT: Final = 23
TARGET_SHARE: Final = 0.70
RECORD_RATE: Final = 950  # new records per second: about 1,000 transitions per second with the clears
LATENCY_MARGIN_MS: Final = 50.0
DRAIN_TIMEOUT: Final = 300.0
TOPIC_WAIT_POLLS: Final = 240


def bridge_environ(prefix: str, bootstrap: str, url: str) -> dict[str, str]:
    """Bridge settings with topics of their own, polling ``url`` (first start: now)."""
    return boro_environ(
        url,
        BOROBRIDGE_NAME=prefix,
        BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        BOROBRIDGE_KAFKA__TOPICS__EVENTS=f"{prefix}.alarms.{{project_id}}",
        BOROBRIDGE_KAFKA__TOPICS__ACTIVE=f"{prefix}.active",
        BOROBRIDGE_KAFKA__TOPICS__CHECKPOINTS=f"{prefix}.checkpoints",
        BOROBRIDGE_KAFKA__TOPICS__SCHEMAS=f"{prefix}.schemas",
        BOROBRIDGE_KAFKA__TOPICS__DEAD_LETTERS=f"{prefix}.dlq",
        BOROBRIDGE_KAFKA__TOPICS__PARTITIONS="3",
    )


@dataclass
class RecordingSink:
    """Delivers through the Kafka sink and keeps each batch, so the baseline can send the same records."""

    sink: KafkaSink
    batches: list[Batch] = field(default_factory=list)
    events: int = 0

    async def restore(self) -> dict[str, Checkpoint]:
        """The sink's checkpoints."""
        return await self.sink.restore()

    async def deliver(self, batch: Batch) -> None:
        """Deliver, then count and keep the batch."""
        await self.sink.deliver(batch)
        self.events += len(batch.events)
        self.batches.append(batch)


class TimedClient(BoroClient):
    """The Boro client, noting how long its caller waits for each round's replies (the delivery of the round
    before goes on meanwhile)."""

    waited: float = 0.0
    records: int = 0  # records in the replies, repeats included

    async def task_alarms(self, queries: Sequence[AlarmQuery]) -> list[PageResult]:
        """The client's own batched TaskAlarms, timed, its records counted."""
        started = time.perf_counter()
        try:
            results = await super().task_alarms(queries)
        finally:
            self.waited += time.perf_counter() - started
        self.records += sum(result.size for result in results if isinstance(result, AlarmPage))
        return results


@dataclass
class ThroughputSamples:
    """Transitions per second of each run, and what the bridge runs spent waiting for the simulator."""

    bridge: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    bare_batched: list[float] = field(default_factory=list)
    wait_share: list[float] = field(default_factory=list)
    reads_per_change: list[float] = field(default_factory=list)


@dataclass
class Rig:
    """The bridge under test (pipeline, sink, timed client), the simulator feeding it and the bare producer."""

    pipeline: Pipeline
    committer: RecordingSink
    sim: SimulatorProcess
    client: TimedClient
    producer: Any

    async def bridge_run(self, samples: ThroughputSamples) -> list[Batch]:
        """One backlog through the bridge: its rate, share of time waiting for a round and records read per change
        go to ``samples``; returns the batches it delivered."""
        expected = await self.sim.add_backlog()
        self.committer.batches.clear()
        self.client.waited, self.client.records = 0.0, 0
        started = time.perf_counter()
        await self._drain(self.committer.events + expected)
        elapsed = time.perf_counter() - started
        samples.bridge.append(expected / elapsed)
        samples.wait_share.append(self.client.waited / elapsed)
        samples.reads_per_change.append(self.client.records / expected)
        return list(self.committer.batches)

    async def bare_run(self, rounds: list[list[KafkaRecord]], transitions: int, *, batched: bool) -> float:
        """The same records, one transaction per round, from the bare producer: transitions per second.

        One ``producer.send`` per record, or (``batched``) the records queued the way the bridge queues them.
        """
        started = time.perf_counter()
        for records in rounds:
            async with self.producer.transaction():
                if batched:
                    await asyncio.gather(*await send_in_batches(self.producer, records))
                else:
                    await asyncio.gather(*[await self._send(record) for record in records])
        return transitions / (time.perf_counter() - started)

    async def one_pair(self, samples: ThroughputSamples) -> None:
        """A bridge run, then the bare producer sending what the bridge sent, record by record and batched."""
        batches = await self.bridge_run(samples)
        rounds = [self.committer.sink._records(batch) for batch in batches]
        transitions = sum(len(batch.events) for batch in batches)
        samples.bare.append(await self.bare_run(rounds, transitions, batched=False))
        samples.bare_batched.append(await self.bare_run(rounds, transitions, batched=True))

    async def _drain(self, target: int) -> None:
        """Poll back to back until ``target`` transitions are committed in all (bounded)."""
        async with asyncio.timeout(DRAIN_TIMEOUT):
            while self.committer.events < target:
                await self.pipeline.poll_once()

    async def _send(self, record: KafkaRecord) -> Any:
        topic, key, value, headers = record
        return await self.producer.send(topic, value, key=key, headers=headers)


@contextlib.asynccontextmanager
async def bare_producer(sink: KafkaSink, name: str) -> AsyncIterator[Any]:
    """A producer with the sink's own options and a transactional id of its own."""
    options = producer_options(sink._settings, sink._name) | {"transactional_id": f"bench-bare-{name}"}
    producer = AIOKafkaProducer(**options)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def measure_throughput(bootstrap: str, *, quick: bool) -> Table:
    """Alternate bridge and bare runs over fresh backlogs, after one warm-up pair."""
    runs, backlog = (2, 1000) if quick else (5, 8000)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    samples = ThroughputSamples()
    sim_options = ["--projects", str(PROJECTS), "--backlog", str(backlog), "--mean-state-seconds", "1e9"]
    async with simulator_process(sim_options) as sim:
        settings = load_settings(None, bridge_environ(prefix, bootstrap, sim.url))
        assert settings.kafka is not None
        async with httpx.AsyncClient() as http, KafkaSink(settings.kafka, prefix) as sink:
            committer = RecordingSink(sink)
            client = TimedClient(http, settings.boro)
            pipeline = Pipeline(client, committer, settings, server_name="bench")
            await pipeline.restore()
            await pipeline.poll_once()
            async with bare_producer(sink, prefix) as producer:
                rig = Rig(pipeline, committer, sim, client, producer)
                await rig.one_pair(ThroughputSamples())  # topics' leaders, connections, JIT-free warm caches
                for _ in range(runs):
                    await rig.one_pair(samples)
    return _throughput_table(samples, backlog)


def _throughput_table(samples: ThroughputSamples, backlog: int) -> Table:
    table = Table(f"end to end: sustained transitions/s, backlog of {backlog} records, one transaction per round")
    bare = table.add(Series("bare aiokafka transactional producer", "trans/s", samples.bare))
    bridge = table.add(
        Series("borobridge (HTTP + pipeline + KafkaSink)", "trans/s", samples.bridge), baseline=bare.name
    )
    table.add(Series("  share of time the next round was awaited", "fraction", samples.wait_share))
    table.add(Series("  records read per change of the backlog", "records", samples.reads_per_change))
    batched = Series("bare producer, batches as the bridge queues", "trans/s", samples.bare_batched)
    table.add(batched, baseline=bare.name)
    table.add(Series("borobridge, against the batched bare producer", "trans/s", samples.bridge), baseline=batched.name)
    table.checks.append(Check("borobridge / bare producer", bridge.median / bare.median, TARGET_SHARE, better="higher"))
    table.notes.append(f"{PROJECTS} projects, batched TaskAlarms (50 per request), pages of 100; {machine_load()}")
    return table


# ---- latency -------------------------------------------------------------------------------------------------


def bridge_config(directory: Path, environ: dict[str, str], poll_interval: float) -> Path:
    """A YAML (JSON) configuration for ``borobridge run`` equivalent to ``environ``."""
    settings = load_settings(None, environ)
    assert settings.kafka is not None
    config = {
        "name": settings.name,
        "boro": {"url": settings.boro.url, "user_id": 4, "poll_interval": poll_interval},
        "first_start": {"mode": "now"},
        "health": {"enabled": False},
        "logging": {"level": "ERROR"},
        "kafka": {
            "bootstrap_servers": settings.kafka.bootstrap_servers,
            "topics": {name: getattr(settings.kafka.topics, name) for name in _TOPIC_KEYS} | {"partitions": 3},
        },
    }
    path = directory / "bridge.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


_TOPIC_KEYS: Final = ("events", "active", "checkpoints", "schemas", "dead_letters")


async def wait_for_topics(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, once all of them exist (bounded)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(TOPIC_WAIT_POLLS):
            if set(topics) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.5)
        else:
            raise TimeoutError(f"the bridge did not create {topics} in time")
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


@dataclass(frozen=True)
class Visibility:
    """When a read_committed consumer first got each event id, and the wall-clock span it watched."""

    seen: dict[str, float]
    started: float
    ended: float


async def visible_times(bootstrap: str, partitions: list[TopicPartition], seconds: float) -> Visibility:
    """Watch the partitions from their end for ``seconds``, noting when each event id first arrives."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    seen: dict[str, float] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        started = time.time()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for message in (m for messages in batch.values() for m in messages):
                seen.setdefault(dict(message.headers)["ce_id"].decode(), now)
    finally:
        await asyncio.sleep(0)
        await consumer.stop()
    return Visibility(seen, started, time.time())


@dataclass(frozen=True)
class Creation:
    """When the simulator created a change's record, and when the simulated interval it stands for began."""

    created: float
    interval_start: float


def creations(path: Path) -> dict[str, Creation]:
    """Event id → its creation, from the simulator's change log."""
    found: dict[str, Creation] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event, created, interval_start = line.split()
        found.setdefault(event, Creation(float(created), float(interval_start)))
    return found


@dataclass
class LatencyWindow:
    """Latencies (ms) of one window: from each record's creation, and from its interval's start (upper bound)."""

    from_creation: list[float]
    upper_bound: list[float]


async def measure_latency(bootstrap: str, *, quick: bool, poll_interval: float) -> Table:
    """``borobridge run`` at about 1,000 transitions/s; latency percentiles per window."""
    windows, seconds = (1, 5.0) if quick else (3, 30.0)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    latencies: list[LatencyWindow] = []
    rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as scratch:
        log = Path(scratch) / "changes.log"
        sim_options = ["--projects", str(PROJECTS), "--rate", str(RECORD_RATE), "--changes-log", str(log)]
        async with simulator_process(sim_options) as sim:
            config = bridge_config(Path(scratch), bridge_environ(prefix, bootstrap, sim.url), poll_interval)
            command = [sys.executable, "-m", "borobridge", "run", "--config", str(config)]
            bridge = await asyncio.create_subprocess_exec(*command, cwd=REPO)
            try:
                topics = [f"{prefix}.alarms.{FIRST_PROJECT + p}" for p in range(PROJECTS)]
                partitions = await wait_for_topics(bootstrap, topics)
                await asyncio.sleep(2 * poll_interval)
                for _ in range(windows):
                    visible = await visible_times(bootstrap, partitions, seconds)
                    latencies.append(_latencies(visible, creations(log), poll_interval))
                    rates.append(len(visible.seen) / seconds)
            finally:
                await stop_process(bridge)
    return _latency_table(latencies, rates, poll_interval)


def _latencies(visible: Visibility, created: dict[str, Creation], poll_interval: float) -> LatencyWindow:
    """Latencies of every event created well inside the window; one never seen counts as the window's end.

    Events created in the last two intervals plus a second are left out: their slow ones could not be seen yet.
    """
    first, last = visible.started + 1.0, visible.ended - 2 * poll_interval - 1.0
    eligible = [(event, at) for event, at in created.items() if first <= at.created <= last]
    seen = [visible.seen.get(event, visible.ended) for event, _ in eligible]
    return LatencyWindow(
        [1000 * (moment - at.created) for moment, (_, at) in zip(seen, eligible, strict=True)],
        [1000 * (moment - at.interval_start) for moment, (_, at) in zip(seen, eligible, strict=True)],
    )


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1] if len(values) > 1 else 0.0


def _latency_table(windows: list[LatencyWindow], rates: list[float], poll_interval: float) -> Table:
    table = Table(f"end to end: latency to read_committed visibility, poll interval {poll_interval:g} s")
    table.add(Series("transitions per second", "trans/s", rates))
    for share in (0.5, 0.9, 0.99):
        samples = [_percentile(window.from_creation, share) for window in windows]
        table.add(Series(f"p{round(share * 100)} latency", "ms", samples))
    upper = [_percentile(window.upper_bound, 0.99) for window in windows]
    table.add(Series("p99 from the step's interval start", "ms", upper))
    p99 = statistics.median(_percentile(window.from_creation, 0.99) for window in windows)
    table.checks.append(Check("p99 latency", p99, 1000 * poll_interval + LATENCY_MARGIN_MS, unit="ms"))
    events = sum(len(window.from_creation) for window in windows)
    table.notes.append(f"{events} events measured over {len(windows)} windows; {machine_load()}")
    return table


async def run(*, quick: bool, poll_intervals: list[float], bootstrap: str | None = None) -> list[Table]:
    """Both end-to-end comparisons against one Kafka broker (started here unless ``bootstrap`` names one)."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # leader elections of new topics are expected
    with contextlib.ExitStack() as stack:
        bootstrap = bootstrap or stack.enter_context(kafka_broker()).bootstrap
        tables = [await measure_throughput(bootstrap, quick=quick)]
        tables += [await measure_latency(bootstrap, quick=quick, poll_interval=i) for i in poll_intervals]
        return tables


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.e2e [--quick]``."""
    parser = argparse.ArgumentParser(description="end-to-end throughput and latency against a bare producer")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--poll-interval", type=float, action="append", help="seconds; repeat for several (default: 0.25, 1 and 2)"
    )
    parser.add_argument("--bootstrap", help="use this Kafka (127.0.0.1 only) instead of starting one")
    options = parser.parse_args(argv)
    intervals = options.poll_interval or ([1.0] if options.quick else [0.25, 1.0, 2.0])
    for table in asyncio.run(run(quick=options.quick, poll_intervals=intervals, bootstrap=options.bootstrap)):
        table.print()


if __name__ == "__main__":
    main()
