"""MQTT delivery on a real Mosquitto: layout, MQTT 5 and 3.1.1, retained state, nothing lost in an outage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from borobridge.backoff import Backoff
from borobridge.boro.client import BoroClient
from borobridge.boro.simulator import Simulator
from borobridge.boro.simulator_http import serve_simulator
from borobridge.checkpoint import FileCheckpointStore
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.settings import MqttSettings, Settings, load_settings
from borobridge.sinks.mqtt import MqttDirectSink, MqttPublisher
from borobridge.sinks.mqtt_relay import MqttRelay
from borobridge.sinks.stream import JsonLinesSink
from tests.expectations import assert_exactly_once_in_order, expected_ids, read_events, simulator_with_history
from tests.kafka_reading import binary_events, consume, kafka_settings
from tests.support.kafka import KafkaCluster
from tests.support.mosquitto import (
    MosquittoBroker,
    ReceivedMessage,
    collect,
    mosquitto_sub,
    session_properties,
    user_properties_of,
)
from tests.test_bridge_e2e import advancing
from tests.test_kafka_delivery import event_topics, kafka_bridge, topic_names

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


def direct_settings(url: str, tmp_path: Path) -> Settings:
    return load_settings(
        None,
        {
            "BOROBRIDGE_NAME": "mqtt-test",
            "BOROBRIDGE_BORO__URL": url,
            "BOROBRIDGE_BORO__USER_ID": "4",
            "BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF": "0.01",
            "BOROBRIDGE_BORO__RETRY__MAX_BACKOFF": "0.2",
            "BOROBRIDGE_FIRST_START__MODE": "all",
            "BOROBRIDGE_OUTPUT__PATH": str(tmp_path / "events.jsonl"),
            "BOROBRIDGE_STATE__PATH": str(tmp_path / "state.json"),
        },
    )


@contextlib.asynccontextmanager
async def direct_bridge(url: str, tmp_path: Path, mqtt: MqttSettings) -> AsyncIterator[Pipeline]:
    """A pipeline publishing straight to MQTT, committing its local cursor after every PUBACK."""
    settings = direct_settings(url, tmp_path)
    assert settings.output.path is not None
    inner = JsonLinesSink(FileCheckpointStore(Path(settings.state.path)), Path(settings.output.path))
    async with httpx.AsyncClient() as http, MqttPublisher(mqtt, settings.name) as publisher:
        pipeline = Pipeline(
            BoroClient(http, settings.boro), MqttDirectSink(publisher, inner), settings, server_name="boro-test"
        )
        try:
            await pipeline.restore()
            yield pipeline
        finally:
            inner.close()


def as_event(message: ReceivedMessage) -> dict[str, Any]:
    """An MQTT 5 binary-mode message parsed by the cloudevents SDK (user properties as ce- headers)."""
    headers = {f"ce-{name}": value for name, value in message.user_properties.items()}
    headers["content-type"] = str(message.content_type)
    parsed = ce_http.from_binary(ce_http.HTTPMessage(headers, message.payload), JSONFormat())
    event: dict[str, Any] = {name: str(value) for name, value in parsed.get_attributes().items()}
    event["data"] = parsed.get_data()
    return event


def message_count(expected: set[str]) -> int:
    """Every transition, plus a retained set or removal for each raise and clear."""
    return len(expected) + sum(1 for event_id in expected if not event_id.endswith("-event"))


def transitions(messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
    return [m for m in messages if "/active/" not in m.topic]


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
    schemas = await collect(mosquitto, "borobridge/schemas/#", count=5, listen_s=3)
    assert "borobridge/schemas/alarm.raised.v1" in {m.topic for m in schemas}


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


class PersistentSubscriber:
    """An aiomqtt subscriber with a persistent session: it must get every message, even across outages."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._broker = broker
        self.messages: list[aiomqtt.Message] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._session(stop)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def _session(self, stop: asyncio.Event) -> None:
        async with self._broker.client(
            identifier="noc-screen", clean_start=False, properties=session_properties(), timeout=3
        ) as client:
            await client.subscribe("boro/+/+/+/+", qos=1)
            reader = asyncio.create_task(self._read(client))
            stopped = asyncio.create_task(stop.wait())
            done, pending = await asyncio.wait([reader, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if reader in done:
                reader.result()  # the connection dropped: raise its MqttError

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.messages.append(message)

    def events(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for message in self.messages:
            properties = user_properties_of(message)
            if "active" in str(message.topic):
                continue
            seen.setdefault(properties["id"], {**properties, "data": json.loads(bytes(message.payload))})
        return list(seen.values())


@contextlib.asynccontextmanager
async def subscribed(broker: MosquittoBroker) -> AsyncIterator[PersistentSubscriber]:
    subscriber = PersistentSubscriber(broker)
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    await asyncio.sleep(0.5)
    try:
        yield subscriber
    finally:
        stop.set()
        await task


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
