"""MQTT delivery on a real Mosquitto: layout, MQTT 5 and 3.1.1, retained state, nothing lost in an outage,
bad records skipped, escaped topic fields, refused publishes retried, and a relay that never stops the bridge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from borobridge.backoff import Backoff
from borobridge.events import CloudEvent
from borobridge.health import Health
from borobridge.metrics import Metrics
from borobridge.mqtt_relay import MqttRelay, Skipped, decode_record, relay_group
from borobridge.settings import KafkaSettings, MqttSettings, load_settings
from borobridge.simulator import Simulator, serve_simulator
from borobridge.sinks.mqtt import MqttPublisher
from borobridge.sinks.mqtt_messages import topic_level
from borobridge.transitions import Transition
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, read_events, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import event_topics, kafka_bridge, topic_names
from tests.support.kafka_reading import binary_events, consume, kafka_settings
from tests.support.mosquitto import (
    MosquittoBroker,
    collect,
    mosquitto_sub,
)
from tests.support.mqtt_bridge import as_event, direct_bridge, message_count, subscribed, transitions
from tests.support.pipelines import advancing

pytestmark = pytest.mark.mqtt


def mqtt_settings(broker: MosquittoBroker, protocol: str = "mqttv5") -> MqttSettings:
    environ = {
        "BOROBRIDGE_MQTT__HOST": broker.host,
        "BOROBRIDGE_MQTT__PORT": str(broker.port),
        "BOROBRIDGE_MQTT__PROTOCOL": protocol,
        "BOROBRIDGE_MQTT__PUBLISH_TIMEOUT": "3",
    }
    if broker.username is not None:
        environ |= {"BOROBRIDGE_MQTT__USERNAME": broker.username, "BOROBRIDGE_MQTT__PASSWORD": str(broker.password)}
    if broker.ca_file is not None:
        environ["BOROBRIDGE_MQTT__TLS__CA_FILE"] = str(broker.ca_file)
    settings = load_settings(None, environ).mqtt
    assert settings is not None
    return settings


def active_ids(sim: Simulator) -> set[str]:
    return {str(r.alarm["id"]) for r in sim.records() if r.alarm.get("active") is True}


async def test_direct_mqtt5_layout_retained_state_and_status(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    sim = simulator_with_history(5, seed=51, projects=1, rate_per_second=10)
    settings = mqtt_settings(mosquitto)
    async with serve_simulator(sim) as url:
        expected = expected_ids(sim)
        async with mosquitto_sub(mosquitto, "boro/#", count=message_count(expected), listen_s=15) as sub:
            async with direct_bridge(url, tmp_path, settings) as pipeline:
                await pipeline.poll_once()
            received = await sub.messages()
    events = [as_event(m) for m in transitions(received)]
    assert_exactly_once_in_order(events, sim, expected)
    assert {e["id"] for e in events} == {e["id"] for e in read_events(tmp_path / "events.jsonl")}
    for message, event in zip(transitions(received), events, strict=True):
        project, task, group, name = message.topic.split("/")[1:]
        assert (project, task, group, name) == (
            event["project"],
            event["task"],
            event["triggergroup"],
            event["subject"],
        )
        assert message.qos == 1
    retained = await collect(mosquitto, "boro/+/+/active/#", count=len(active_ids(sim)) or 1, listen_s=3)
    assert {m.topic.rsplit("/", 1)[1] for m in retained if m.payload} == active_ids(sim)
    assert all(m.retain for m in retained)
    [status] = await collect(mosquitto, "borobridge/mqtt-test/status", count=1, listen_s=3)
    assert status.payload == b"offline"  # the bridge left cleanly
    schemas = await collect(mosquitto, "borobridge/schemas/#", count=6, listen_s=3)
    assert {"borobridge/schemas/alarm.raised.v1", "borobridge/schemas/asyncapi"} <= {m.topic for m in schemas}


async def test_direct_mqtt311_is_structured_json(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    sim = simulator_with_history(5, seed=52, projects=1, rate_per_second=10)
    count = message_count(expected_ids(sim))
    async with (
        serve_simulator(sim) as url,
        mosquitto_sub(mosquitto, "boro/#", count=count, listen_s=15, protocol="mqttv311") as sub,
    ):
        async with direct_bridge(url, tmp_path, mqtt_settings(mosquitto, "mqttv311")) as pipeline:
            await pipeline.poll_once()
        received = await sub.messages()
    events = []
    for message in transitions(received):
        kafka_message = ce_kafka.KafkaMessage({"content-type": b"application/cloudevents+json"}, None, message.payload)
        assert ce_kafka.from_structured(kafka_message, JSONFormat()).get_id() == json.loads(message.payload)["id"]
        events.append(json.loads(message.payload))
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


async def test_password_and_tls_brokers(mosquitto_password: MosquittoBroker, mosquitto_tls: MosquittoBroker) -> None:
    for broker in (mosquitto_password, mosquitto_tls):
        async with mosquitto_sub(broker, "borobridge/+/status", count=1, listen_s=10) as sub:
            async with MqttPublisher(mqtt_settings(broker), "secure") as publisher:
                await publisher.publish([])
                await publisher.publish_messages([])
                await publisher._connected()
            messages = await sub.messages()
        assert messages[0].payload in {b"online", b"offline"}


async def test_direct_mode_outage_loses_nothing(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    sim = simulator_with_history(5, seed=53, projects=1, rate_per_second=20)
    async with (
        serve_simulator(sim) as url,
        subscribed(mosquitto) as subscriber,
        direct_bridge(url, tmp_path, mqtt_settings(mosquitto)) as pipeline,
    ):
        await pipeline.poll_once()
        token = pipeline.streams[0].token
        mosquitto.stop()
        sim.advance(new_records=40)
        await pipeline.poll_once()
        assert pipeline.streams[0].token == token, "the cursor moved without PUBACKs"
        mosquitto.start()
        for _ in range(20):
            await pipeline.poll_once()
            await asyncio.sleep(0.3)
            if {e["id"] for e in subscriber.events()} >= expected_ids(sim):
                break
    assert {e["id"] for e in subscriber.events()} == expected_ids(sim)
    retained = await collect(mosquitto, "boro/+/+/active/#", count=len(active_ids(sim)) or 1, listen_s=3)
    assert {m.topic.rsplit("/", 1)[1] for m in retained if m.payload} == active_ids(sim)


@pytest.mark.kafka
async def test_relay_outage_never_blocks_kafka_and_loses_nothing(
    kafka: KafkaCluster, mosquitto: MosquittoBroker
) -> None:
    kafka_config, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=54, projects=2, rate_per_second=20)
    stop = asyncio.Event()
    async with (
        serve_simulator(sim) as url,
        subscribed(mosquitto) as subscriber,
        kafka_bridge(url, kafka_config, prefix) as pipeline,
        MqttPublisher(mqtt_settings(mosquitto), prefix) as publisher,
    ):
        relay = MqttRelay(kafka_config, publisher, prefix, metrics=Metrics(), backoff=Backoff(0.05, 0.5))
        relaying = asyncio.create_task(relay.run(stop))
        await pipeline.poll_once()
        await wait_for(lambda: len(subscriber.events()) >= len(expected_ids(sim)), seconds=30)
        mosquitto.stop()
        async with advancing(sim):
            for _ in range(10):
                await pipeline.poll_once()
                await asyncio.sleep(0.1)
        await pipeline.poll_once()
        during_outage = binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))
        assert {e["id"] for e in during_outage} >= expected_ids(sim), "Kafka delivery stalled"
        mosquitto.start()
        await wait_for(lambda: {e["id"] for e in subscriber.events()} >= expected_ids(sim), seconds=60)
        stop.set()
        await relaying
    assert {e["id"] for e in subscriber.events()} == expected_ids(sim)
    retained = await collect(mosquitto, "boro/+/+/active/#", count=len(active_ids(sim)) or 1, listen_s=3)
    assert {m.topic.rsplit("/", 1)[1] for m in retained if m.payload} == active_ids(sim)


async def wait_for(condition: Any, seconds: float, step: float = 0.2) -> None:
    """Check ``condition`` every ``step`` seconds; TimeoutError after ``seconds``."""
    for _ in range(round(seconds / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise TimeoutError(f"condition not met within {seconds} s")


@pytest.mark.kafka
async def test_borobridge_run_with_kafka_and_mqtt_relays_every_event(
    kafka: KafkaCluster, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The composed process: the poll loop commits to Kafka and the relay task republishes it over MQTT."""
    kafka_config, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=55, projects=2, rate_per_second=10)
    expected = expected_ids(sim)
    async with serve_simulator(sim) as url:
        config = {
            "name": prefix,
            "boro": {"url": url, "user_id": 4, "poll_interval": 0.5},
            "first_start": {"mode": "all"},
            "health": {"enabled": False},
            "kafka": {"bootstrap_servers": kafka.bootstrap, "topics": topic_names(kafka_config)},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        }
        path = tmp_path / "config.yaml"
        path.write_text(json.dumps(config), encoding="utf-8")
        async with mosquitto_sub(mosquitto, "boro/#", count=message_count(expected), listen_s=60) as sub:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "borobridge", "run", "--config", str(path)
            )
            received = await sub.messages()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await process.wait() == 0
    assert {as_event(m)["id"] for m in transitions(received)} == expected
    [status] = await collect(mosquitto, f"borobridge/{prefix}/status", count=1, listen_s=3)
    assert status.payload == b"offline"


def test_topic_fields_are_escaped_reversibly() -> None:
    for value in ("freeze", "a/b+c#d", "100%", "nul\x00tab\tdel\x7fc1\x85", "Über 1.1", ""):
        escaped = topic_level(value)
        assert not set(escaped) & {"/", "+", "#", "\x00", "\t", "\x7f", "\x85"}
        assert unquote(escaped) == value
    assert topic_level("a/b+c#d%e") == "a%2Fb%2Bc%23d%25e"
    assert topic_level("Über 1.1") == "Über 1.1"


def bridge_event(event_id: str, *, group: str = "etr", name: str = "freeze") -> CloudEvent:
    """An event as the bridge writes it to Kafka (project 23, task 7)."""
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": "boro-test/23/7",
        "type": f"com.elecard.boro.alarm.{event_id.rpartition('-')[2]}.v1",
        "subject": name,
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": f"urn:borobridge:schema:alarm.{event_id.rpartition('-')[2]}.v1",
        "partitionkey": "23/7",
        "severity": "error",
        "triggergroup": group,
        "project": "23",
        "task": "7",
        "probe": "probe-1",
    }
    record_id, _, kind = event_id.partition("-")  # an id naming no transition still builds, for its headers
    return CloudEvent(attributes, b'{"transition": "raised"}', Transition(kind or "raised"), int(record_id))


Record = tuple[Sequence[tuple[str, bytes]], bytes | None]


async def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    """Create ``topic`` (one partition) and write ``records`` to it in order, as a foreign producer would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for headers, value in records:
            await producer.send_and_wait(topic, value, key=b"23/7", headers=list(headers))
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[str, int]:
    """The offsets the relay's consumer group committed, by ``topic/partition``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {f"{tp.topic}/{tp.partition}": meta.offset for tp, meta in offsets.items()}


@contextlib.asynccontextmanager
async def relaying(
    kafka: KafkaSettings, mqtt: MqttSettings, name: str, metrics: Metrics, health: Health
) -> AsyncIterator[MqttRelay]:
    """A relay running until the block ends; its ``run`` must return, not raise."""
    stop = asyncio.Event()
    async with MqttPublisher(mqtt, name) as publisher:
        relay = MqttRelay(kafka, publisher, name, metrics=metrics, backoff=Backoff(0.05, 0.3), health=health)
        task = asyncio.create_task(relay.run(stop))
        try:
            yield relay
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await task


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.kafka
async def test_relay_skips_records_that_are_not_cloudevents_and_escapes_topic_fields(
    kafka: KafkaCluster, mosquitto: MosquittoBroker
) -> None:
    kafka_config, prefix = kafka_settings(kafka.bootstrap)
    tricky = bridge_event("77-raised", group="etr/1", name="freeze/+#%")
    await produce(
        kafka.bootstrap,
        f"{prefix}.alarms.23",
        [
            ([], None),  # a tombstone
            ([("origin", b"another producer")], b'{"hello": "world"}'),  # no CloudEvent headers
            (tricky.kafka_binary_headers(), tricky.data),
            (bridge_event("78-event").kafka_binary_headers(), b"{}"),
        ],
    )
    metrics = Metrics()
    async with (
        mosquitto_sub(mosquitto, "boro/#", count=3, listen_s=30) as sub,
        relaying(kafka_config, mqtt_settings(mosquitto), prefix, metrics, Health()) as relay,
    ):
        received = await sub.messages()
        await wait_for(lambda: relay.relayed == 2, seconds=10)
    assert [m.topic for m in received] == [
        "boro/23/7/etr%2F1/freeze%2F%2B%23%25",
        "boro/23/7/active/77",
        "boro/23/7/etr/freeze",
    ]
    assert [m.user_properties["subject"] for m in received[:2]] == ["freeze/+#%"] * 2
    assert counted(metrics, "borobridge_mqtt_relay_skipped_total", reason="tombstone") == 1
    assert counted(metrics, "borobridge_mqtt_relay_skipped_total", reason="not_a_cloudevent") == 1
    assert await committed_offsets(kafka.bootstrap, relay_group(prefix)) == {f"{prefix}.alarms.23/0": 4}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_relay_failures_restart_the_relay_alone_with_backoff(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Kafka unreachable: the relay counts, reports and retries; ``run`` never raises into the task group."""
    kafka_config, prefix = kafka_settings(f"127.0.0.1:{closed_port()}")
    metrics, health = Metrics(), Health(sink_bound=0)
    health.mark_restored()
    health.boro_succeeded()
    with caplog.at_level(logging.DEBUG, logger="borobridge.mqtt_relay"):
        async with relaying(kafka_config, mqtt_settings(mosquitto), prefix, metrics, health):
            await wait_for(lambda: counted(metrics, "borobridge_errors_total", kind="kafka") >= 3, seconds=30)
            ready, reason = health.readiness()
    assert not ready
    assert "sink mqtt failing for" in reason
    assert "cannot read the events topics from Kafka" in reason
    relay_lines = [r for r in caplog.records if r.name == "borobridge.mqtt_relay"]
    assert [r.levelno for r in relay_lines].count(logging.WARNING) == 1, "one WARNING per run of failures"
    assert all("restarting the relay in" in r.getMessage() for r in relay_lines)


def test_decode_record_names_what_makes_a_record_unrelayable() -> None:
    event = bridge_event("77-cleared")
    structured = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    assert decode_record(event.kafka_binary_headers(), event.data) == event
    assert decode_record(structured, event.structured()) == event
    cases = {
        "tombstone": ([], None),
        "undecodable": (structured, b"{not json"),
        "undecodable ": ([("ce_id", b"\xff")], b"{}"),
        "not_a_cloudevent": ([("origin", b"elsewhere")], b"{}"),
        "not_a_cloudevent ": (bridge_event("77").kafka_binary_headers(), b"{}"),
    }
    for reason, (headers, value) in cases.items():
        skipped = decode_record(headers, value)
        assert isinstance(skipped, Skipped), reason
        assert skipped.reason == reason.strip()


@pytest.mark.kafka
async def test_refused_publish_is_retried_counted_and_reported_until_the_broker_accepts_it(
    kafka: KafkaCluster, mosquitto_acl: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    kafka_config, prefix = kafka_settings(kafka.bootstrap)
    events = [bridge_event(f"{number}-event") for number in range(3)]
    await produce(kafka.bootstrap, f"{prefix}.alarms.23", [(e.kafka_binary_headers(), e.data) for e in events])
    mosquitto_acl.set_acl("user borobridge\ntopic read #\ntopic write borobridge/#\n")
    caplog.set_level(logging.INFO, logger="borobridge.mqtt_relay")
    metrics, health = Metrics(), Health(sink_bound=0)
    health.mark_restored()
    health.boro_succeeded()
    group = relay_group(prefix)
    async with (
        mosquitto_sub(mosquitto_acl, "boro/#", count=3, listen_s=60) as sub,
        relaying(kafka_config, mqtt_settings(mosquitto_acl), prefix, metrics, health) as relay,
    ):
        await wait_for(lambda: counted(metrics, "borobridge_errors_total", kind="mqtt_refused") >= 3, seconds=30)
        ready, reason = health.readiness()
        assert not ready
        assert "refused a publish to 'boro/23/7/etr/freeze': Not authorized (reason code 0x87)" in reason
        assert relay.relayed == 0
        assert await committed_offsets(kafka.bootstrap, group) == {}
        mosquitto_acl.set_acl("user borobridge\ntopic readwrite #\n")
        received = await sub.messages()
        await wait_for(lambda: relay.relayed == len(events), seconds=10)
    recoveries = [r for r in caplog.records if r.getMessage().startswith("MQTT relay recovered after")]
    assert [r.levelno for r in recoveries] == [logging.INFO]
    assert [m.user_properties["id"] for m in received] == [e.attributes["id"] for e in events]
    assert health.readiness() == (True, "ok")
    assert await committed_offsets(kafka.bootstrap, group) == {f"{prefix}.alarms.23/0": 3}
