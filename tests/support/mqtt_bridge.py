"""An in-process bridge publishing straight to MQTT, and counting what it should publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiomqtt
import httpx
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.pipeline import Pipeline
from borobridge.settings import MqttSettings, Settings
from borobridge.sinks.jsonlines import JsonLinesSink
from borobridge.sinks.mqtt import MqttDirectSink, MqttPublisher
from tests.support.mosquitto import MosquittoBroker, ReceivedMessage, session_properties, user_properties_of
from tests.support.settings import bridge_settings


def direct_settings(url: str, tmp_path: Path) -> Settings:
    return bridge_settings(url, tmp_path, BOROBRIDGE_NAME="mqtt-test", BOROBRIDGE_BORO__RETRY__MAX_BACKOFF="0.2")


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


SUBSCRIBE_S: Final = 10.0


class PersistentSubscriber:
    """An aiomqtt subscriber with a persistent session: it must get every message, even across outages."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._broker = broker
        self.messages: list[aiomqtt.Message] = []
        self.listening = asyncio.Event()  # set once the first session's subscription is acknowledged

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
            self.listening.set()
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
        """Each transition received, once (the first copy), as its user properties and data."""
        seen: dict[str, dict[str, Any]] = {}
        for message in self._transitions():
            properties = user_properties_of(message)
            seen.setdefault(properties["id"], {**properties, "data": json.loads(bytes(message.payload))})
        return list(seen.values())

    def copies(self) -> Counter[str]:
        """How many times each transition's id was received."""
        return Counter(user_properties_of(message)["id"] for message in self._transitions())

    def _transitions(self) -> list[aiomqtt.Message]:
        """The messages that carry a transition (not the retained ``active`` states)."""
        return [message for message in self.messages if "active" not in str(message.topic)]


@contextlib.asynccontextmanager
async def subscribed(broker: MosquittoBroker) -> AsyncIterator[PersistentSubscriber]:
    subscriber = PersistentSubscriber(broker)
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    try:
        async with asyncio.timeout(SUBSCRIBE_S):
            await subscriber.listening.wait()
        yield subscriber
    finally:
        stop.set()
        await task
