"""An in-process bridge publishing straight to MQTT, and counting what it should publish."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.pipeline import Pipeline
from borobridge.settings import MqttSettings, Settings
from borobridge.sinks.jsonlines import JsonLinesSink
from borobridge.sinks.mqtt import MqttDirectSink, MqttPublisher
from tests.support.mosquitto import ReceivedMessage
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
