"""MQTT relay: events committed to Kafka, relayed to Mosquitto at QoS 1, against a bare aiomqtt publisher.

The events are the bridge's own (recorded simulator replies through the pipeline), committed to a real Kafka
by ``KafkaSink``. The relay (``MqttRelay`` with ``MqttPublisher``, as ``borobridge run`` composes them)
consumes them read_committed and publishes each as MQTT 5 binary mode plus the retained alarm state; its rate
runs from the start of its first publish to the end of its last (both connections are open beforehand). The
bare baseline publishes the very same messages, prepared beforehand, with the same in-flight window (at most
``max_inflight`` publishes awaiting their PUBACK) and the same batching (all PUBACKs of a batch awaited
together). Runs alternate; each relay run uses a consumer group of its own, so it reads the topics from the
start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import aiomqtt

from bench.e2e import bridge_environ
from bench.hotpath import BridgePath, bench_settings
from bench.processes import kafka_broker, machine_load
from bench.recorded import record_replies
from bench.report import Check, Series, Table
from borobridge.backoff import Backoff
from borobridge.events import CloudEvent
from borobridge.kafka.sink import KafkaSink
from borobridge.metrics import Metrics
from borobridge.mqtt_relay import MAX_RECORDS, MqttRelay
from borobridge.settings import KafkaSettings, MqttSettings, load_settings
from borobridge.sinks import Batch
from borobridge.sinks.mqtt import MqttPublisher, _properties
from borobridge.sinks.mqtt_messages import MqttMessage, event_messages
from tests.support.mosquitto import MosquittoBroker, ensure_installed

TARGET_SHARE: Final = 0.70
RELAY_POLLS: Final = 30_000  # 5 minutes


def recorded_events(*, rounds: int) -> list[list[CloudEvent]]:
    """The CloudEvents the bridge makes of recorded simulator replies, one list per poll round."""
    bridge = BridgePath(bench_settings())
    return [
        bridge.batch(bridge.decode(reply)).events
        for reply in record_replies(projects=10, rounds=rounds, records_per_round=400)
    ]


async def commit_to_kafka(settings: KafkaSettings, name: str, rounds: list[list[CloudEvent]]) -> None:
    """Deliver every round in a transaction of its own, as the bridge does."""
    async with KafkaSink(settings, name) as sink:
        for events in rounds:
            await sink.deliver(Batch(events=events))


class TimedPublisher(MqttPublisher):
    """The bridge's publisher, noting when its first publish began and its last one ended."""

    first_started: float | None = None
    last_ended: float = 0.0

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish as the bridge does, timing the call."""
        if self.first_started is None:
            self.first_started = time.perf_counter()
        await super().publish(events)
        self.last_ended = time.perf_counter()


async def relay_rate(kafka: KafkaSettings, mqtt: MqttSettings, expected: int) -> float:
    """Run a fresh relay until it relayed ``expected`` events; events per second from its first publish on."""
    name = f"relay{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    async with TimedPublisher(mqtt, name) as publisher:
        await publisher.publish_messages([MqttMessage(f"bench/{name}/connected", b"")])  # connect before timing
        relay = MqttRelay(kafka, publisher, name, metrics=Metrics(), backoff=Backoff(0.1, 1.0))
        running = asyncio.create_task(relay.run(stop), name="relay")
        try:
            for _ in range(RELAY_POLLS):
                if relay.relayed >= expected:
                    break
                await asyncio.sleep(0.01)
            else:
                raise TimeoutError(f"the relay passed on {relay.relayed} of {expected} events in time")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
    assert publisher.first_started is not None
    return relay.relayed / (publisher.last_ended - publisher.first_started)


async def bare_rate(mqtt: MqttSettings, batches: list[list[MqttMessage]], events: list[int]) -> float:
    """The same messages from a bare aiomqtt client, connected beforehand: events per second."""
    async with aiomqtt.Client(
        mqtt.host, mqtt.port, protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=mqtt.max_inflight
    ) as client:
        window = asyncio.Semaphore(mqtt.max_inflight)
        started = time.perf_counter()
        for batch in batches:
            await _publish(client, window, batch)
        return sum(events) / (time.perf_counter() - started)


async def _publish(client: aiomqtt.Client, window: asyncio.Semaphore, messages: Sequence[MqttMessage]) -> None:
    """Publish a batch, at most ``max_inflight`` awaiting their PUBACK at once, and wait for every PUBACK."""

    async def one(message: MqttMessage) -> None:
        async with window:
            properties = _properties(message)
            await client.publish(message.topic, message.payload, qos=1, retain=message.retain, properties=properties)

    await asyncio.gather(*(one(message) for message in messages))


def _chunks(events: list[CloudEvent], size: int) -> Iterator[list[CloudEvent]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


@contextlib.contextmanager
def mosquitto() -> Iterator[str]:
    """A Mosquitto of its own on a free 127.0.0.1 port; yields ``host:port``."""
    ensure_installed()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as directory:
        broker = MosquittoBroker(Path(directory))
        broker.start()
        try:
            yield f"{broker.host}:{broker.port}"
        finally:
            broker.stop()


async def measure(*, quick: bool, bootstrap: str | None = None, mqtt_address: str | None = None) -> Table:
    """Commit the events once, then alternate relay runs and bare runs over them (brokers started unless given)."""
    runs = 2 if quick else 5
    rounds = recorded_events(rounds=10 if quick else 40)
    events = [event for round_events in rounds for event in round_events]
    relay: list[float] = []
    bare: list[float] = []
    with contextlib.ExitStack() as stack:
        bootstrap = bootstrap or stack.enter_context(kafka_broker()).bootstrap
        host, _, port = (mqtt_address or stack.enter_context(mosquitto())).rpartition(":")
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        environ = bridge_environ(prefix, bootstrap, "http://unused.invalid/")
        environ |= {"BOROBRIDGE_MQTT__HOST": host, "BOROBRIDGE_MQTT__PORT": port}
        settings = load_settings(None, environ)
        assert settings.kafka is not None
        assert settings.mqtt is not None
        await commit_to_kafka(settings.kafka, prefix, rounds)
        chunks = list(_chunks(events, MAX_RECORDS))
        batches = [[m for event in chunk for m in event_messages(event, settings.mqtt)] for chunk in chunks]
        for _ in range(runs):
            relay.append(await relay_rate(settings.kafka, settings.mqtt, len(events)))
            bare.append(await bare_rate(settings.mqtt, batches, [len(chunk) for chunk in chunks]))
    return _table(relay, bare, len(events), sum(map(len, batches)))


def _table(relay: list[float], bare: list[float], events: int, messages: int) -> Table:
    table = Table(f"MQTT relay: {events} events ({messages} QoS 1 messages) from Kafka to Mosquitto")
    baseline = table.add(Series("bare aiomqtt QoS 1 publisher", "events/s", bare))
    bridge = table.add(Series("borobridge relay (Kafka → MQTT)", "events/s", relay), baseline=baseline.name)
    table.checks.append(Check("relay / bare publisher", bridge.median / baseline.median, TARGET_SHARE, better="higher"))
    table.notes.append(f"MQTT 5 binary mode, in-flight window 200, batches of {MAX_RECORDS} events; {machine_load()}")
    return table


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.mqtt_relay [--quick]``."""
    parser = argparse.ArgumentParser(description="the Kafka → MQTT relay against a bare aiomqtt publisher")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--bootstrap", help="use this Kafka (127.0.0.1 only) instead of starting one")
    parser.add_argument("--mqtt", help="use this Mosquitto, host:port, instead of starting one")
    options = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns once per publish beyond 10 pending
    asyncio.run(measure(quick=options.quick, bootstrap=options.bootstrap, mqtt_address=options.mqtt)).print()


if __name__ == "__main__":
    main()
