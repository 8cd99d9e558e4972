"""Hot path: CPU per alarm from reply bytes to appended Kafka records, against a naive pipeline, no network.

Both pipelines start from the same recorded TaskAlarms reply bodies and end in aiokafka's own record batch
builder (``DefaultRecordBatchBuilder``, what ``AIOKafkaProducer.send`` appends to), one record per append:

- borobridge: ``_match`` and ``BoroClient._page`` (msgspec), then ``Pipeline._add_page`` (transitions and
  CloudEvents), then ``KafkaSink._event_records`` (events plus the active-alarm table) appended to the builder;
- naive: ``json.loads`` of the body, the same transition rules on plain dicts, one cloudevents SDK event per
  transition serialised with its Kafka binary binding (``json.dumps`` inside), appended record by record.

``producer.send`` itself is left out of both: the bridge also calls it once per record, so its cost is common
to both and belongs to the end-to-end benchmark, where the bare producer pays it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

import httpx
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from pyinstrument import Profiler

from bench.recorded import RecordedReply, record_replies
from bench.report import Check, Series, Table
from borobridge.boro.client import BoroClient, _match
from borobridge.boro.queries import AlarmPage
from borobridge.delivery import Batch
from borobridge.events import CloudEvent, EventFactory, event_type, schema_uri
from borobridge.pipeline import Pipeline
from borobridge.settings import Settings, load_settings
from borobridge.sinks.kafka import KafkaSink
from borobridge.sinks.kafka_batches import Record
from borobridge.streams import Stream, open_stream
from borobridge.transitions import AlarmTransition, Transition, TransitionMemory

SERVER: Final = "boro.bench"
BATCH_BYTES: Final = 1_048_576
TARGET_MICROS: Final = 10.0
TARGET_SPEEDUP: Final = 5.0


def bench_settings() -> Settings:
    """Bridge settings for the in-memory pipelines (the Kafka address is never contacted)."""
    return load_settings(
        None,
        {
            "BOROBRIDGE_BORO__URL": f"http://{SERVER}/ctrl_api/v1/json",
            "BOROBRIDGE_BORO__USER_ID": "4",
            "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
        },
    )


class Appender:
    """One open record batch per topic, closed and rebuilt when full, the way the producer's accumulator does."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[DefaultRecordBatchBuilder, int]] = {}
        self.batches = 0

    def append(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Append one record, starting a new batch when the open one is full."""
        builder, offset = self._open.get(topic) or (_new_builder(), 0)
        if builder.append(offset, None, key, value, headers) is None:
            builder.build()
            self.batches += 1
            builder, offset = _new_builder(), 0
            builder.append(offset, None, key, value, headers)
        self._open[topic] = (builder, offset + 1)

    def close(self) -> None:
        """Build every open batch (CRC and all), as the producer does before sending."""
        for builder, _ in self._open.values():
            builder.build()
            self.batches += 1
        self._open.clear()


def _new_builder() -> DefaultRecordBatchBuilder:
    return DefaultRecordBatchBuilder(2, 0, 1, -1, -1, 0, BATCH_BYTES)


class BridgePath:
    """borobridge's own code from reply bytes to Kafka records, with no I/O."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka is not None
        self._settings = settings
        self._client = BoroClient(cast(httpx.AsyncClient, None), settings.boro)  # decoding never uses HTTP
        self._sink = KafkaSink(settings.kafka, "bench")
        self._pipeline = Pipeline(self._client, self._sink, settings, server_name=SERVER)
        self._streams: dict[int, Stream] = {}

    def reset(self) -> None:
        """Forget every transition seen, so the replies can be replayed."""
        self._streams = {}

    def decode(self, reply: RecordedReply) -> list[AlarmPage]:
        """Match the reply items and decode each TaskAlarms result."""
        items = _match(reply.calls, reply.body)
        pages = [self._client._page(query, item) for query, item in zip(reply.queries, items, strict=True)]
        return [page for page in pages if isinstance(page, AlarmPage)]

    def batch(self, pages: list[AlarmPage]) -> Batch:
        """Transitions and CloudEvents of every page, through the pipeline's own step."""
        batch = Batch()
        for page in pages:
            stream = self._stream(page.query.project_id)
            self._pipeline._add_page(batch, stream, page)
            stream.memory.commit()
        return batch

    def records(self, batch: Batch) -> list[Record]:
        """The Kafka records the sink sends for these events (binary mode, active-alarm table included)."""
        return self._sink._event_records(batch)

    def run(self, replies: Iterable[RecordedReply], appender: Appender) -> None:
        """The whole hot path over every reply."""
        for reply in replies:
            for topic, key, value, headers in self.records(self.batch(self.decode(reply))):
                appender.append(topic, key, value, headers)
        appender.close()

    def _stream(self, project_id: int) -> Stream:
        if project_id not in self._streams:
            stream = open_stream(SERVER, project_id, self._settings.boro, None)
            self._streams[project_id] = stream
        return self._streams[project_id]


class NaivePath:
    """The same output the obvious way: stdlib json, the cloudevents SDK, one append per record."""

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

    def run(self, replies: Iterable[RecordedReply], appender: Appender) -> None:
        """Decode, find transitions, build and serialise each event, append each record."""
        for reply in replies:
            document = json.loads(reply.body)
            for item in sorted(document["reply"], key=lambda entry: entry["id"]):
                for alarm in item["result"]["alarms"]:
                    for kind, synthetic in self._transitions(alarm):
                        self._append(appender, alarm, kind, synthetic)
        appender.close()

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

    def _append(self, appender: Appender, alarm: dict[str, Any], kind: Transition, synthetic: bool) -> None:
        message = ce_kafka.to_binary(self._event(alarm, kind, synthetic), self._format)
        headers = list(message.headers.items())
        key = message.key.encode() if isinstance(message.key, str) else message.key
        appender.append(self._topics.events.format(project_id=alarm["project_id"]), key, message.value, headers)
        if kind is not Transition.EVENT:
            table_key = f"{alarm['project_id']}/{alarm['task_id']}/{alarm['id']}".encode()
            cleared = kind is Transition.CLEARED
            appender.append(
                self._topics.active, table_key, None if cleared else message.value, [] if cleared else headers
            )

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


def cpu_micros_per_alarm(run: Callable[[], None], alarms: int) -> float:
    """CPU time (process time) of one run, in microseconds per alarm."""
    gc.collect()
    started = time.process_time()
    run()
    return (time.process_time() - started) * 1e6 / alarms


def stage_samples(bridge: BridgePath, replies: list[RecordedReply], alarms: int) -> dict[str, float]:
    """One pass per stage over the previous stage's output, so each is timed alone."""
    bridge.reset()
    timings: dict[str, float] = {}
    pages: list[list[AlarmPage]] = []
    timings["decode (msgspec)"] = cpu_micros_per_alarm(lambda: pages.extend(map(bridge.decode, replies)), alarms)
    transitions = _transitions_of(pages, timings, alarms)
    events: list[list[CloudEvent]] = []
    factory = EventFactory(SERVER)

    def build() -> None:
        events.extend([factory.build(transition) for transition in page] for page in transitions)

    timings["cloudevents (msgspec)"] = cpu_micros_per_alarm(build, alarms)
    timings["kafka records + append"] = cpu_micros_per_alarm(lambda: _append_all(bridge, events), alarms)
    records = [bridge.records(Batch(events=round_events)) for round_events in events]
    timings["  of which append alone"] = cpu_micros_per_alarm(lambda: _append_records(records), alarms)
    return timings


def _transitions_of(
    pages: list[list[AlarmPage]], timings: dict[str, float], alarms: int
) -> list[list[AlarmTransition]]:
    memories: dict[int, TransitionMemory] = {}
    found: list[list[AlarmTransition]] = []

    def feed_all() -> None:
        for round_pages in pages:
            transitions: list[AlarmTransition] = []
            for page in round_pages:
                memory = memories.setdefault(page.query.project_id, TransitionMemory())
                transitions += memory.feed(page.records)
                memory.commit()
            found.append(transitions)

    timings["transitions"] = cpu_micros_per_alarm(feed_all, alarms)
    return found


def _append_records(rounds: list[list[Record]]) -> None:
    appender = Appender()
    for records in rounds:
        for topic, key, value, headers in records:
            appender.append(topic, key, value, headers)
    appender.close()


def _append_all(bridge: BridgePath, events: list[list[CloudEvent]]) -> None:
    appender = Appender()
    for round_events in events:
        for topic, key, value, headers in bridge.records(Batch(events=round_events)):
            appender.append(topic, key, value, headers)
    appender.close()


def measure(*, quick: bool) -> Table:
    """Alternate the two pipelines over the same replies, several times, and tabulate CPU per alarm."""
    repetitions = 3 if quick else 9
    replies = record_replies(projects=10, rounds=8 if quick else 30, records_per_round=400)
    alarms = sum(reply.alarms for reply in replies)
    settings = bench_settings()
    bridge = BridgePath(settings)
    fast: list[float] = []
    slow: list[float] = []
    stages: dict[str, list[float]] = {}
    pairs: tuple[tuple[BridgePath | NaivePath, list[float]], ...] = ((bridge, fast), (NaivePath(settings), slow))
    for _ in range(repetitions):
        for path, samples in pairs:
            path.reset()
            samples.append(cpu_micros_per_alarm(functools.partial(path.run, replies, Appender()), alarms))
        for stage, value in stage_samples(bridge, replies, alarms).items():
            stages.setdefault(stage, []).append(value)
    return _table(fast, slow, stages, alarms, repetitions)


def _table(fast: list[float], slow: list[float], stages: dict[str, list[float]], alarms: int, runs: int) -> Table:
    table = Table(f"hot path: CPU per alarm, {alarms} alarms per run, {runs} runs alternated")
    bridge = table.add(Series("borobridge hot path", "µs/alarm", fast))
    naive = table.add(Series("naive (json, cloudevents SDK)", "µs/alarm", slow), baseline="borobridge hot path")
    for stage, samples in stages.items():
        table.add(Series(f"  stage: {stage}", "µs/alarm", samples), baseline="borobridge hot path")
    table.checks.append(Check("borobridge median CPU per alarm", bridge.median, TARGET_MICROS, unit="µs"))
    speedup = naive.median / bridge.median
    table.checks.append(Check("naive / borobridge", speedup, TARGET_SPEEDUP, better="higher", unit="x"))
    table.notes.append("CPU = time.process_time; both pipelines append every record to aiokafka's batch builder")
    return table


def profile(*, quick: bool) -> str:
    """A pyinstrument profile of the borobridge path over the recorded replies, as text."""
    replies = record_replies(projects=10, rounds=8 if quick else 30, records_per_round=400)
    bridge = BridgePath(bench_settings())
    profiler = Profiler(interval=0.0002)
    with profiler:
        for _ in range(1 if quick else 5):
            bridge.reset()
            bridge.run(replies, Appender())
    return profiler.output_text(unicode=False, color=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.hotpath [--quick] [--profile]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--profile", action="store_true", help="print where the borobridge path spends its time")
    options = parser.parse_args(argv)
    if options.profile:
        print(profile(quick=options.quick))
        return
    measure(quick=options.quick).print()


if __name__ == "__main__":
    main()
