"""``check-config --connect``: whether each configured dependency answers, one line each, as ``kcat -L`` does.

Boro is asked one ProjectsList page, Kafka its cluster metadata, MQTT a connection (with a client id of its own,
so that a running bridge is not disconnected, and no will). Every check is bounded by the dependency's own
timeout and none writes anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import aiomqtt

from borobridge import tls
from borobridge.boro.client import BoroClient
from borobridge.boro.http import BoroHttpClient
from borobridge.errors import BridgeError, MqttDeliveryError
from borobridge.kafka.admin import cluster_brokers
from borobridge.secret import masked_url
from borobridge.settings import BoroSettings, KafkaSettings, MqttSettings, Settings

MQTT_CONNECT_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one dependency answered: ``ok`` and what was seen, or the reason it failed."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``name  ok: detail`` or ``name  failed: reason``."""
        return f"{self.name:<5} {'ok' if self.ok else 'failed'}: {self.detail}"


async def check_connections(settings: Settings) -> list[Outcome]:
    """One outcome per configured dependency, Boro first; all are asked at once."""
    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = []
    if settings.boro.url:
        checks.append(("boro", lambda: _boro(settings.boro)))
    if (kafka := settings.kafka) is not None:
        checks.append(("kafka", lambda: _kafka(kafka)))
    if (mqtt := settings.mqtt) is not None:
        checks.append(("mqtt", lambda: _mqtt(mqtt)))
    return list(await asyncio.gather(*(_outcome(name, check) for name, check in checks)))


async def _outcome(name: str, check: Callable[[], Awaitable[str]]) -> Outcome:
    try:
        return Outcome(name, ok=True, detail=await check())
    except BridgeError as error:
        return Outcome(name, ok=False, detail=str(error))


async def _boro(settings: BoroSettings) -> str:
    async with BoroHttpClient(settings) as http:
        projects = await BoroClient(http, settings).project_ids()
    return f"{masked_url(settings.url)} lists {len(projects)} projects"


async def _kafka(settings: KafkaSettings) -> str:
    brokers = await cluster_brokers(settings)
    return f"{settings.bootstrap_servers}: {len(brokers)} brokers ({', '.join(brokers)})"


async def _mqtt(settings: MqttSettings) -> str:
    context = tls.client_context(settings.tls, "mqtt.tls") if settings.tls is not None else None
    address = f"{settings.host}:{settings.port}"
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.reveal() if settings.password else None,
        protocol=aiomqtt.ProtocolVersion.V5 if settings.protocol == "mqttv5" else aiomqtt.ProtocolVersion.V311,
        timeout=MQTT_CONNECT_TIMEOUT,
        tls_context=context,
    )
    try:
        async with client:
            pass
    except aiomqtt.MqttError as exc:
        problem = (await tls.probe(settings.host, settings.port, context, "mqtt.tls") if context else None) or exc
        raise MqttDeliveryError(f"cannot connect to MQTT broker {address}: {problem}") from exc
    return f"{address} accepted a connection"
