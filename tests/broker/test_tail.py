"""``borobridge tail``: severity as a minimum, the output formats, start times, and topics that appear later."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
from aiokafka import AIOKafkaProducer

from borobridge.cli import _parser
from borobridge.events import CloudEvent, from_kafka_record
from borobridge.kafka.records import ConsumedRecord
from borobridge.simulator import serve_simulator
from borobridge.tail import SEVERITIES, TailFilter, render_json
from borobridge.transitions import Transition
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import event_topics, kafka_bridge, poll_until_complete, topic_names
from tests.support.kafka_bridge import write_kafka_config as write_config
from tests.support.kafka_reading import binary_events, consume, kafka_settings

TAIL_S: Final = 60.0
HEADERS: Final = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"7-raised"),
    ("ce_source", b"boro://boro-test/projects/23/tasks/5"),
    ("ce_type", b"com.elecard.boro.alarm.raised.v1"),
    ("ce_time", b"2026-11-20T08:00:00.000Z"),
    ("ce_subject", b"no_signal"),
    ("ce_dataschema", b"urn:borobridge:schema:alarm.raised.v1"),
    ("ce_partitionkey", b"23/5"),
    ("ce_severity", b"major"),
    ("ce_triggergroup", b"eth"),
    ("ce_project", b"23"),
    ("ce_task", b"5"),
    ("ce_probe", b"2"),
    ("content-type", b"application/json"),
]


def event_of(severity: str) -> CloudEvent:
    return CloudEvent({"project": "23", "task": "5", "severity": severity}, b"{}", Transition.RAISED, 7)


@pytest.mark.parametrize("level", SEVERITIES)
def test_level_means_this_severity_or_worse(level: str) -> None:
    shown = [severity for severity in SEVERITIES if TailFilter(level=level).accepts(event_of(severity))]
    assert shown == list(SEVERITIES[SEVERITIES.index(level) :])


def test_a_severity_tail_does_not_know_is_never_hidden() -> None:
    assert TailFilter(level="fatal").accepts(event_of("catastrophic"))


def test_json_format_carries_the_kafka_record_and_the_event() -> None:
    message = ConsumedRecord(
        topic="boro.alarms.23",
        partition=4,
        offset=812,
        timestamp=1795161600123,
        key=b"23/5",
        value=b'{"transition":"raised"}',
        headers=HEADERS,
    )
    line = json.loads(render_json(message, from_kafka_record(message.headers, b'{"transition":"raised"}')))
    assert {name: line[name] for name in ("topic", "partition", "offset", "timestamp", "key")} == {
        "topic": "boro.alarms.23",
        "partition": 4,
        "offset": 812,
        "timestamp": 1795161600123,
        "key": "23/5",
    }
    assert line["headers"]["ce_id"] == "7-raised"
    assert line["headers"]["content-type"] == "application/json"
    assert line["event"]["id"] == "7-raised"
    assert line["event"]["severity"] == "major"
    assert line["event"]["data"] == {"transition": "raised"}


@pytest.mark.parametrize(
    ("given", "seconds_ago"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800)],
)
def test_since_takes_a_duration_back_from_now(given: str, seconds_ago: float) -> None:
    before = time.time()
    since = _parser().parse_args(["tail", "--since", given]).since
    assert before - seconds_ago - 1 < since <= time.time() - seconds_ago


def test_since_takes_an_rfc3339_time_or_unix_seconds() -> None:
    assert _parser().parse_args(["tail", "--since", "2026-11-20T08:00:00Z"]).since == 1795161600
    assert _parser().parse_args(["tail", "--since", "1795161600.5"]).since == 1795161600.5


def test_since_and_from_beginning_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["tail", "--since", "1h", "--from-beginning"])
    assert "not allowed with argument" in capsys.readouterr().err


@contextlib.asynccontextmanager
async def tail_process(config: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "borobridge", "tail", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def read_until(stream: asyncio.StreamReader, fragment: str) -> list[str]:
    lines: list[str] = []
    while not lines or fragment not in lines[-1]:
        line = await stream.readline()
        assert line, f"the stream ended before {fragment!r}: {lines}"
        lines.append(line.decode())
    return lines


@pytest.mark.kafka
async def test_tail_follows_topics_created_after_it_started(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=63, projects=2, rate_per_second=10)
    async with serve_simulator(sim) as url:
        config = write_config(tmp_path, url, kafka.bootstrap, topic_names(settings), prefix)
        config.write_text(config.read_text().replace('"WARNING"', '"INFO"'), encoding="utf-8")
        expected = expected_ids(sim)
        async with tail_process(config, "--format", "json", "--max", str(len(expected))) as tail:
            assert tail.stderr is not None
            assert tail.stdout is not None
            async with asyncio.timeout(TAIL_S):
                await read_until(tail.stderr, "following 0 events topics")
                async with kafka_bridge(url, settings, prefix) as pipeline:
                    await poll_until_complete(pipeline, settings, prefix, sim)
                out, _ = await tail.communicate()
    assert tail.returncode == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert {line["event"]["id"] for line in lines} == expected
    assert {line["topic"] for line in lines} == set(event_topics(prefix, sim))
    assert all(line["key"] == line["event"]["partitionkey"] == line["headers"]["ce_partitionkey"] for line in lines)
    assert all(isinstance(line["offset"], int) and isinstance(line["partition"], int) for line in lines)


@pytest.mark.kafka
async def test_tail_since_a_time_starts_at_the_offsets_of_that_time(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=64, projects=2, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await poll_until_complete(pipeline, settings, prefix, sim)
        before = expected_ids(sim)
        since = time.time()
        sim.advance(new_records=30)
        await poll_until_complete(pipeline, settings, prefix, sim)
        after = expected_ids(sim) - before
        assert after, "the world did not move"
        config = write_config(tmp_path, url, kafka.bootstrap, topic_names(settings), prefix)
        async with tail_process(config, "--since", repr(since), "--format", "cloudevent", "--idle-exit", "3") as tail:
            async with asyncio.timeout(TAIL_S):
                out, err = await tail.communicate()
    assert tail.returncode == 0, err.decode()
    shown: list[dict[str, Any]] = [json.loads(line) for line in out.decode().splitlines()]
    assert {event["id"] for event in shown} == after
    every = binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))
    assert {event["id"] for event in every} == before | after


@pytest.mark.kafka
async def test_tail_skips_a_record_it_did_not_write_with_one_line(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=65, projects=1, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await poll_until_complete(pipeline, settings, prefix, sim)
        topic = event_topics(prefix, sim)[0]
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, None, key=b"23/5")  # a tombstone
            await producer.send_and_wait(topic, b"{}", headers=[("ce_id", b"x-raised")])  # a foreign producer
        finally:
            await producer.stop()
        config = write_config(tmp_path, url, kafka.bootstrap, topic_names(settings), prefix)
        async with tail_process(config, "--from-beginning", "--format", "cloudevent", "--idle-exit", "3") as tail:
            async with asyncio.timeout(TAIL_S):
                out, err = await tail.communicate()
    assert tail.returncode == 0, err.decode()
    assert {json.loads(line)["id"] for line in out.decode().splitlines()} == expected_ids(sim)
    skipped = [line for line in err.decode().splitlines() if "not a borobridge CloudEvent" in line]
    assert len(skipped) == 2, err.decode()
    assert "Traceback" not in err.decode()
