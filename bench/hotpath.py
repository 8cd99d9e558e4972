"""Hot path: CPU per alarm from reply bytes to queued Kafka record batches, against a naive pipeline, no network.

Both pipelines start from the same recorded TaskAlarms reply bodies and end in a real ``AIOKafkaProducer`` that
never connects (:class:`OfflineProducer`): topic metadata is given to it up front, and the batches it queued are
built here (CRC and all) in place of its sender, after each reply.

- borobridge: ``_match`` and ``BoroClient._page`` (msgspec), then the pipeline's steps for each answer
  (``reading.check_reply``, ``Stream.feed``: the reading strategy's ``answer_of`` and the transition memory, and
  ``EventFactory.build`` for each transition), then ``KafkaSink._event_records`` (events plus the active-alarm
  table) queued the way the sink queues them: ``send_in_batches``, one batch per partition through
  ``producer.send_batch``. The per-round checkpoints (``Stream.checkpoint``, ``Stream.advance`` and the encoded
  checkpoint records) are a stage of their own, outside the hot path, as they were before;
- naive: ``json.loads`` of the body, the same transition rules on plain dicts, one cloudevents SDK event per
  transition serialised with its Kafka binary binding (``json.dumps`` inside), one ``producer.send`` per record.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import gc
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.protocol.metadata import MetadataResponse_v0
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from pyinstrument import Profiler

from bench.recorded import RecordedReply, record_replies
from bench.report import Check, Series, Table
from borobridge import reading
from borobridge.boro.client import BoroClient, _match
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.checkpoint import Checkpoint
from borobridge.events import CloudEvent, EventFactory, event_type, schema_uri
from borobridge.kafka.batches import send_in_batches
from borobridge.kafka.records import KafkaRecord
from borobridge.kafka.sink import KafkaSink
from borobridge.settings import Settings, load_settings
from borobridge.sinks import Batch
from borobridge.streams import Stream, open_stream, stream_id
from borobridge.transitions import AlarmTransition, Transition
from tests.support.settings import boro_environ

SERVER: Final = "boro.bench"
BATCH_BYTES: Final = 64 * 1_048_576
PARTITIONS: Final = 3
NOWHERE_HOST, NOWHERE_PORT = "127.0.0.1", 9  # never contacted
NOWHERE: Final = f"{NOWHERE_HOST}:{NOWHERE_PORT}"
TARGET_MICROS: Final = 10.0
TARGET_SPEEDUP: Final = 5.0


def bench_settings() -> Settings:
    """Bridge settings for the in-memory pipelines (the Kafka address is never contacted)."""
    environ = boro_environ(f"http://{SERVER}/ctrl_api/v1/json", BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS=NOWHERE)
    return load_settings(None, environ)


class OfflineProducer:
    """A real ``AIOKafkaProducer`` that never connects: it knows the topics' partitions, and what it queued is built
    here, in place of its sender.

    Batches are large enough (``BATCH_BYTES``) that none fills within one reply: a full batch would wait for a
    sender that is not there.
    """

    def __init__(self, topics: Iterable[str]) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, linger_ms=0, max_batch_size=BATCH_BYTES)
        partitions = [(0, partition, 0, [0], [0]) for partition in range(PARTITIONS)]
        metadata = MetadataResponse_v0([(0, NOWHERE_HOST, NOWHERE_PORT)], [(0, topic, partitions) for topic in topics])
        self.producer.client.cluster.update_metadata(metadata)
        self.batches = 0

    def build_queued(self) -> None:
        """Build every batch queued so far (CRC included), as the sender does before it sends them."""
        drained, _ = self.producer._message_accumulator.drain_by_nodes(ignore_nodes=set())
        for batches in drained.values():
            for batch in batches.values():
                batch.get_data_buffer()
                self.batches += 1

    async def close(self) -> None:
        """Stop the producer (nothing is left to send)."""
        await self.producer.stop()


class BridgePath:
    """borobridge's own code from reply bytes to Kafka records, with no I/O: the pipeline's steps for each answer."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka is not None
        self._settings = settings
        self._client = BoroClient(cast(httpx.AsyncClient, None), settings.boro)  # decoding never uses HTTP
        self._sink = KafkaSink(settings.kafka, "bench")
        self._factory = EventFactory(SERVER)
        self._streams: dict[int, Stream] = {}

    def reset(self) -> None:
        """Forget every transition seen, so the replies can be replayed."""
        self._streams = {}

    def decode(self, reply: RecordedReply) -> list[AlarmPage]:
        """Match the reply items and decode each TaskAlarms result."""
        items = _match(reply.calls, reply.body)
        pages = [self._client._page(query, item) for query, item in zip(reply.queries, items, strict=True)]
        return [page for page in pages if isinstance(page, AlarmPage)]

    def transitions(self, pages: list[AlarmPage], *, commit: bool = True) -> list[AlarmTransition]:
        """Each page checked and fed to its stream as the pipeline feeds an answer (``Stream.feed``); with
        ``commit``, the memory keeps what was fed, as a delivered round's checkpoint makes it."""
        transitions: list[AlarmTransition] = []
        order = self._settings.boro.reply_order
        for page in pages:
            stream = self._stream(page.query)
            position = stream.position
            reading.check_reply(position, page)
            fed = stream.feed(position, [page.query], [page], order)
            stream.position = fed.position
            transitions += fed.transitions
            if commit:
                stream.memory.commit()
        return transitions

    def events(self, transitions: list[AlarmTransition]) -> list[CloudEvent]:
        """The CloudEvent of each transition (``EventFactory.build``, as the pipeline builds them)."""
        build = self._factory.build
        return [build(transition) for transition in transitions]

    def batch(self, pages: list[AlarmPage]) -> Batch:
        """The round's batch of events: every page fed, every transition made an event."""
        return Batch(events=self.events(self.transitions(pages)))

    def records(self, batch: Batch) -> list[KafkaRecord]:
        """The Kafka records the sink sends for these events (binary mode, active-alarm table included)."""
        return self._sink._event_records(batch)

    def checkpoint_records(self, project_ids: Iterable[int]) -> list[KafkaRecord]:
        """What a delivered round does per stream: its checkpoint built, encoded as the sink sends it, adopted."""
        streams = [self._streams[project_id] for project_id in project_ids]
        records = self._sink._checkpoint_records([stream.checkpoint() for stream in streams])
        for stream in streams:
            stream.advance(self._settings.reconcile.window)
        return records

    async def run(self, replies: Iterable[RecordedReply], producer: OfflineProducer) -> None:
        """The whole hot path over every reply."""
        for reply in replies:
            await send_in_batches(producer.producer, self.records(self.batch(self.decode(reply))))
            producer.build_queued()

    def _stream(self, query: AlarmQuery) -> Stream:
        """The project's stream, resumed at the token the recording first asked with."""
        stream = self._streams.get(query.project_id)
        if stream is None:
            boro = self._settings.boro
            saved = Checkpoint(stream=stream_id(SERVER, query.project_id, boro), update_token=query.update_token)
            stream = open_stream(SERVER, query.project_id, boro, saved, self._settings.first_start)
            self._streams[query.project_id] = stream
        return stream


class NaivePath:
    """The same output the obvious way: stdlib json, the cloudevents SDK, one ``producer.send`` per record."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka is not None
        self._topics = settings.kafka.topics
        self._factory = EventFactory(SERVER)
        self._format = JSONFormat()
        self._active: dict[int, set[int]] = {}
        self._done: dict[int, set[int]] = {}

    def reset(self) -> None:
        """Forget every transition seen."""
        self._active, self._done = {}, {}

    async def run(self, replies: Iterable[RecordedReply], producer: OfflineProducer) -> None:
        """Decode, find transitions, build and serialise each event, send each record."""
        for reply in replies:
            document = json.loads(reply.body)
            for item in sorted(document["reply"], key=lambda entry: entry["id"]):
                for alarm in item["result"]["alarms"]:
                    for kind, synthetic in self._transitions(alarm):
                        await self._send(producer.producer, alarm, kind, synthetic)
            producer.build_queued()

    def _transitions(self, alarm: dict[str, Any]) -> list[tuple[Transition, bool]]:
        active = self._active.setdefault(alarm["project_id"], set())
        done = self._done.setdefault(alarm["project_id"], set())
        record_id = alarm["id"]
        if record_id in done:
            return []
        if alarm["type"] == "event":
            done.add(record_id)
            return [(Transition.EVENT, False)]
        if alarm.get("active"):
            if record_id in active:
                return []
            active.add(record_id)
            return [(Transition.RAISED, False)]
        done.add(record_id)
        if record_id in active:
            active.discard(record_id)
            return [(Transition.CLEARED, False)]
        return [(Transition.RAISED, True), (Transition.CLEARED, False)]

    async def _send(self, producer: Any, alarm: dict[str, Any], kind: Transition, synthetic: bool) -> None:
        message = ce_kafka.to_binary(self._event(alarm, kind, synthetic), self._format)
        headers = list(message.headers.items())
        key = message.key.encode() if isinstance(message.key, str) else message.key
        topic = self._topics.events.format(project_id=alarm["project_id"])
        await producer.send(topic, message.value, key=key, headers=headers)
        if kind is not Transition.EVENT:
            table_key = f"{alarm['project_id']}/{alarm['task_id']}/{alarm['id']}".encode()
            cleared = kind is Transition.CLEARED
            value, table_headers = (None, []) if cleared else (message.value, headers)
            await producer.send(self._topics.active, value, key=table_key, headers=table_headers)

    def _event(self, alarm: dict[str, Any], kind: Transition, synthetic: bool) -> SdkEvent:
        start = float(alarm["trigger_time"])
        info = alarm.get("info", {})
        data: dict[str, Any] = {"transition": kind.value, "alarm": alarm}
        if kind is Transition.CLEARED and "time" in info and "time_end" in info:
            data["duration_seconds"] = max(0.0, info["time_end"] - info["time"])
            data["time_derived"] = True
            start += data["duration_seconds"]
        if synthetic:
            data["synthetic"] = True
        attributes = {
            "id": f"{alarm['id']}-{kind.value}",
            "source": self._factory.source(alarm["project_id"], alarm["task_id"]),
            "type": event_type(kind),
            "subject": alarm["name"],
            "time": dt.datetime.fromtimestamp(start, dt.UTC),
            "datacontenttype": "application/json",
            "dataschema": schema_uri(kind),
            "partitionkey": f"{alarm['project_id']}/{alarm['task_id']}",
            "severity": alarm["level"],
            "triggergroup": alarm["trigger_group"],
            "project": str(alarm["project_id"]),
            "task": str(alarm["task_id"]),
            "probe": str(alarm["app_id"]),
        }
        return SdkEvent(attributes, data)


async def cpu_micros_per_alarm(run: Callable[[], Awaitable[None] | None], alarms: int) -> float:
    """CPU time (process time) of one run, in microseconds per alarm.

    What the benchmark holds when the run starts (the recorded replies, the previous stages' outputs) is frozen
    out of the cycle collector meanwhile: a stage is not charged for scanning data a bridge would not keep.
    """
    gc.collect()
    gc.freeze()
    try:
        started = time.process_time()
        result = run()
        if result is not None:
            await result
        return (time.process_time() - started) * 1e6 / alarms
    finally:
        gc.unfreeze()


async def stage_samples(bridge: BridgePath, replies: list[RecordedReply], topics: list[str]) -> dict[str, float]:
    """One pass per stage over the previous stage's output, so each is timed alone."""
    alarms = sum(reply.alarms for reply in replies)
    bridge.reset()
    timings: dict[str, float] = {}
    pages: list[list[AlarmPage]] = []
    timings["decode (msgspec)"] = await cpu_micros_per_alarm(lambda: pages.extend(map(bridge.decode, replies)), alarms)
    transitions: list[list[AlarmTransition]] = []
    timings["transitions"] = await cpu_micros_per_alarm(
        lambda: transitions.extend(map(bridge.transitions, pages)), alarms
    )
    events: list[list[CloudEvent]] = []
    timings["cloudevents (msgspec)"] = await cpu_micros_per_alarm(
        lambda: events.extend(map(bridge.events, transitions)), alarms
    )
    records: list[list[KafkaRecord]] = []
    timings["kafka records"] = await cpu_micros_per_alarm(
        lambda: records.extend(bridge.records(Batch(events=round_events)) for round_events in events), alarms
    )
    producer = OfflineProducer(topics)
    try:
        timings["kafka batches (send_in_batches)"] = await cpu_micros_per_alarm(
            lambda: _queue_all(producer, records), alarms
        )
    finally:
        await producer.close()
    bridge.reset()
    timings["checkpoints (per round, not in the path)"] = checkpoint_micros_per_alarm(bridge, pages, alarms)
    return timings


def checkpoint_micros_per_alarm(bridge: BridgePath, pages: list[list[AlarmPage]], alarms: int) -> float:
    """CPU of the per-round checkpoint work (build, encode, adopt) over a replay, in microseconds per alarm.

    Each round is fed untimed first; only the checkpoints of the streams it touched are timed, as the pipeline
    builds one per touched stream and round.
    """
    gc.collect()
    gc.freeze()
    spent = 0.0
    try:
        for round_pages in pages:
            bridge.transitions(round_pages, commit=False)
            started = time.process_time()
            bridge.checkpoint_records(page.query.project_id for page in round_pages)
            spent += time.process_time() - started
    finally:
        gc.unfreeze()
    return spent * 1e6 / alarms


async def _queue_all(producer: OfflineProducer, rounds: list[list[KafkaRecord]]) -> None:
    for records in rounds:
        await send_in_batches(producer.producer, records)
        producer.build_queued()


async def measure(*, quick: bool) -> Table:
    """Alternate the two pipelines over the same replies, several times, and tabulate CPU per alarm."""
    repetitions = 3 if quick else 9
    replies = record_replies(projects=10, rounds=8 if quick else 30, records_per_round=400)
    alarms = sum(reply.alarms for reply in replies)
    settings = bench_settings()
    topics = kafka_topics(settings, replies)
    bridge = BridgePath(settings)
    fast: list[float] = []
    slow: list[float] = []
    stages: dict[str, list[float]] = {}
    pairs: tuple[tuple[BridgePath | NaivePath, list[float]], ...] = ((bridge, fast), (NaivePath(settings), slow))
    for _ in range(repetitions):
        for path, samples in pairs:
            path.reset()
            producer = OfflineProducer(topics)
            try:
                samples.append(await cpu_micros_per_alarm(functools.partial(path.run, replies, producer), alarms))
            finally:
                await producer.close()
        for stage, value in (await stage_samples(bridge, replies, topics)).items():
            stages.setdefault(stage, []).append(value)
    return _table(fast, slow, stages, alarms, repetitions)


def kafka_topics(settings: Settings, replies: Iterable[RecordedReply]) -> list[str]:
    """Every topic the pipelines write to: each project's events topic and the active-alarm table."""
    assert settings.kafka is not None
    topics = settings.kafka.topics
    projects = sorted({query.project_id for reply in replies for query in reply.queries})
    return [topics.events.format(project_id=project) for project in projects] + [topics.active]


def _table(fast: list[float], slow: list[float], stages: dict[str, list[float]], alarms: int, runs: int) -> Table:
    table = Table(f"hot path: CPU per alarm, {alarms} alarms per run, {runs} runs alternated")
    bridge = table.add(Series("borobridge hot path", "µs/alarm", fast))
    naive = table.add(Series("naive (json, cloudevents SDK)", "µs/alarm", slow), baseline="borobridge hot path")
    for stage, samples in stages.items():
        table.add(Series(f"  stage: {stage}", "µs/alarm", samples), baseline="borobridge hot path")
    table.checks.append(Check("borobridge median CPU per alarm", bridge.median, TARGET_MICROS, unit="µs"))
    speedup = naive.median / bridge.median
    table.checks.append(Check("naive / borobridge", speedup, TARGET_SPEEDUP, better="higher", unit="x"))
    table.notes.append(
        "CPU = time.process_time; both pipelines queue every record in a real AIOKafkaProducer that never connects"
    )
    return table


async def profile(*, quick: bool) -> str:
    """A pyinstrument profile of the borobridge path over the recorded replies, as text."""
    replies = record_replies(projects=10, rounds=8 if quick else 30, records_per_round=400)
    settings = bench_settings()
    bridge = BridgePath(settings)
    producer = OfflineProducer(kafka_topics(settings, replies))
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    try:
        with profiler:
            for _ in range(1 if quick else 5):
                bridge.reset()
                await bridge.run(replies, producer)
    finally:
        await producer.close()
    return profiler.output_text(unicode=False, color=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.hotpath [--quick] [--profile]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--profile", action="store_true", help="print where the borobridge path spends its time")
    options = parser.parse_args(argv)
    if options.profile:
        print(asyncio.run(profile(quick=options.quick)))
        return
    asyncio.run(measure(quick=options.quick)).print()


if __name__ == "__main__":
    main()
