"""MQTT delivery with aiomqtt at QoS 1: one connection that reconnects, and the direct sink without Kafka.

A publish counts only once its PUBACK arrived with a success reason code. A batch with any message refused
(MQTT 5 reason code >= 0x80) raises MqttRefusedError, one with any message unacknowledged MqttDeliveryError; the
connection is dropped, and the next batch connects again (with the caller's backoff). After a failure the next
batch goes one message at a time, until a batch succeeds: Mosquitto 2.0 closes the connection right after a
refused PUBACK, and with more messages in flight that PUBACK, the only word of why, is lost in the reset.
The status and schema messages are held to the same rule, so an ACL that refuses them shows.
The last will marks the bridge ``offline`` (retained); a fresh connection marks it ``online`` and publishes
the JSON Schemas and the AsyncAPI document retained. Replicas of one bridge share that status topic, each with a
client id of its own: each one watches the topic and marks the bridge ``online`` again when another one that stops
marks it ``offline``, so it reads ``offline`` only once none runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from borobridge import tls
from borobridge.checkpoint import Checkpoint
from borobridge.errors import MqttDeliveryError, MqttRefusedError
from borobridge.events import CloudEvent
from borobridge.schemas import documents
from borobridge.settings import MqttSettings
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from borobridge.sinks.mqtt_acks import PubackReasons
from borobridge.sinks.mqtt_messages import MqttMessage, event_messages

log = logging.getLogger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
SUBACK_FAILURE: Final = 0x80  # MQTT 3.1.1's one refusal code in a SUBACK
CANCEL_ATTEMPTS: Final = 20
CANCEL_WAIT_S: Final = 0.1


class MqttPublisher:
    """Publishes CloudEvents to one broker; an async context manager that connects lazily."""

    def __init__(self, settings: MqttSettings, bridge_name: str) -> None:
        self._settings = settings
        self._bridge = bridge_name
        self._client: aiomqtt.Client | None = None
        self._reasons: PubackReasons | None = None
        self._one_at_a_time = False  # after a failure, until a batch succeeds
        self._status_topic = settings.topics.status.format(bridge=bridge_name)
        self._tls_context = tls.client_context(settings.tls, "mqtt.tls") if settings.tls else None
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop_watching()  # before the bridge marks itself offline, which it must not undo
        if self._client is not None:
            try:
                await self._client.publish(self._status_topic, OFFLINE, qos=1, retain=True, timeout=2)
            except aiomqtt.MqttError as exc:
                log.info("could not mark the bridge offline on MQTT: %s", exc)
            await self._disconnect()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish every event (and its retained state) and wait for all PUBACKs."""
        messages = [message for event in events for message in event_messages(event, self._settings)]
        await self.publish_messages(messages)

    async def publish_messages(self, messages: Sequence[MqttMessage]) -> None:
        """Publish in order, acknowledged all or raise MqttDeliveryError (MqttRefusedError for a refusal)."""
        if not messages:
            return
        client = await self._connected()
        publish = self._one_by_one if self._one_at_a_time else self._windowed
        failures = await publish(client, messages)
        self._one_at_a_time = bool(failures)
        if not failures:
            return
        await self._disconnect()
        refusals = [failure for failure in failures if isinstance(failure, MqttRefusedError)]
        if refusals:
            raise _refused(refusals, len(messages))
        raise MqttDeliveryError(
            f"MQTT broker {self._address()} did not acknowledge {len(failures)} of {len(messages)} messages: "
            f"{failures[0]}"
        ) from failures[0]

    async def _windowed(self, client: aiomqtt.Client, messages: Sequence[MqttMessage]) -> list[BaseException]:
        """Every message, at most ``max_inflight`` waiting for their PUBACK at once (aiomqtt's cost per pending
        call grows with the number pending); the failures."""
        window = asyncio.Semaphore(self._settings.max_inflight)

        async def publish(message: MqttMessage) -> None:
            async with window:
                await self._publish(client, message)

        results = await asyncio.gather(*(publish(message) for message in messages), return_exceptions=True)
        return [result for result in results if isinstance(result, BaseException)]

    async def _one_by_one(self, client: aiomqtt.Client, messages: Sequence[MqttMessage]) -> list[BaseException]:
        """Each message once the one before was acknowledged; stops at the first failure and returns it."""
        for message in messages:
            try:
                await self._publish(client, message)
            except Exception as exc:  # the same failures the windowed publish collects
                return [exc]
        return []

    async def _publish(self, client: aiomqtt.Client, message: MqttMessage) -> None:
        await self._acknowledged(
            client,
            message.topic,
            message.payload,
            retain=message.retain,
            properties=_properties(message) if self._settings.protocol == "mqttv5" else None,
        )

    async def _acknowledged(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        *,
        retain: bool,
        properties: Properties | None = None,
    ) -> None:
        """Publish at QoS 1; MqttRefusedError when the PUBACK carries a failure reason code."""
        await client.publish(
            topic, payload, qos=1, retain=retain, properties=properties, timeout=self._settings.publish_timeout
        )
        reason = self._reasons.refusal() if self._reasons is not None else None
        if reason is not None:
            raise MqttRefusedError(
                f"MQTT broker {self._address()} refused a publish to {topic!r}: {reason.getName()} "
                f"(reason code 0x{reason.value:02X})",
                topic=topic,
                reason=reason.getName(),
            )

    async def _connected(self) -> aiomqtt.Client:
        if self._client is not None:
            return self._client
        client = self._new_client()
        client.pending_calls_threshold = self._settings.max_inflight  # our window; aiomqtt warns past 10 otherwise
        self._reasons = PubackReasons(client)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            problem = await self._tls_problem() or str(exc)
            raise MqttDeliveryError(f"cannot connect to MQTT broker {self._address()}: {problem}") from exc
        self._client = client
        try:
            await self._acknowledged(client, self._status_topic, ONLINE, retain=True)
            await self._publish_schemas(client)
        except MqttRefusedError:
            await self._disconnect()
            raise
        except aiomqtt.MqttError as exc:
            await self._disconnect()
            problem = await self._tls_problem() or str(exc)
            raise MqttDeliveryError(f"cannot connect to MQTT broker {self._address()}: {problem}") from exc
        log.info("connected to MQTT broker %s", self._address())
        self._watcher = asyncio.create_task(self._keep_online(client))
        return client

    async def _keep_online(self, client: aiomqtt.Client) -> None:
        """Mark the bridge ``online`` again whenever another replica of it that stops marks it ``offline`` (its
        last will, or a clean stop), until this connection ends."""
        try:
            granted = await client.subscribe(self._status_topic, qos=1, timeout=self._settings.publish_timeout)
            if _refused_subscription(granted):
                log.info(
                    "MQTT broker %s refused a subscription to %s: with several replicas it may read offline "
                    "while one still runs",
                    self._address(),
                    self._status_topic,
                )
                return
            async for message in client.messages:
                if message.payload == OFFLINE:
                    await self._acknowledged(client, self._status_topic, ONLINE, retain=True)
        except (aiomqtt.MqttError, MqttRefusedError) as exc:
            log.debug("stopped watching %s: %s", self._status_topic, exc)

    async def _tls_problem(self) -> str | None:
        """What fails in a TLS handshake with the broker, explained: aiomqtt keeps only OpenSSL's words, or, when
        a TLS 1.3 broker refuses the client's certificate after the handshake, only a timeout."""
        if self._tls_context is None:
            return None
        return await tls.probe(self._settings.host, self._settings.port, self._tls_context, "mqtt.tls")

    async def _publish_schemas(self, client: aiomqtt.Client) -> None:
        for document in documents():
            topic = self._settings.topics.schemas.format(name=document.name)
            await self._acknowledged(client, topic, document.content, retain=True)

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await _cancelled(watcher)

    async def _disconnect(self) -> None:
        await self._stop_watching()
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError as exc:
                log.debug("MQTT disconnect failed: %s", exc)
            _take_disconnection(client)

    def _new_client(self) -> aiomqtt.Client:
        settings = self._settings
        v5 = settings.protocol == "mqttv5"
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password.reveal() if settings.password else None,
            identifier=settings.client_id or default_client_id(self._bridge),
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self._status_topic, OFFLINE, qos=1, retain=True),
            keepalive=settings.keepalive,
            timeout=settings.publish_timeout,
            max_inflight_messages=settings.max_inflight,
            tls_context=self._tls_context,
        )

    def _address(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"


class MqttDirectSink:
    """Without Kafka: publish to MQTT first, then write JSON lines and commit the local cursor."""

    def __init__(self, publisher: MqttPublisher, inner: JsonLinesSink) -> None:
        self._publisher = publisher
        self._inner = inner

    async def restore(self) -> dict[str, Checkpoint]:
        """The local cursor file's checkpoints."""
        return await self._inner.restore()

    async def deliver(self, batch: Batch) -> None:
        """Every PUBACK first; only then the cursor may move."""
        await self._publisher.publish(batch.events)
        await self._inner.deliver(batch)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it ended. asyncio.wait_for in Python 3.11 (aiomqtt waits for every
    acknowledgement with it) drops a cancellation that arrives as the awaited reply does, so it is repeated."""
    for _ in range(CANCEL_ATTEMPTS):
        task.cancel()
        await asyncio.wait([task], timeout=CANCEL_WAIT_S)
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                log.debug("an MQTT task had failed: %r", task.exception())
            return
    log.warning("an MQTT task did not stop when cancelled: %r", task)


def _refused_subscription(granted: tuple[int, ...] | list[ReasonCode]) -> bool:
    """Whether a SUBACK refused: 0x80 in MQTT 3.1.1, a failure reason code in MQTT 5."""
    return any(code.is_failure if isinstance(code, ReasonCode) else code >= SUBACK_FAILURE for code in granted)


def default_client_id(bridge_name: str) -> str:
    """The MQTT client id of this process when ``mqtt.client_id`` is not set: one of its own, since a broker closes
    the connection of a client whose id another one connects with (replicas, or a rolling update's two pods)."""
    return f"borobridge-{bridge_name}-{socket.gethostname()}-{os.getpid()}"


def _take_disconnection(client: aiomqtt.Client) -> None:
    """aiomqtt 2 keeps a dropped connection's error in a future that only a reader of ``messages`` awaits; take it
    here, or asyncio logs "Future exception was never retrieved" for every connection the broker dropped."""
    disconnected = client._disconnected  # aiomqtt 2 exposes it no other way
    if disconnected.done() and not disconnected.cancelled() and disconnected.exception() is not None:
        log.debug("the MQTT broker had dropped the connection: %s", disconnected.exception())


def _refused(refusals: list[MqttRefusedError], total: int) -> MqttRefusedError:
    """One error for a batch the broker refused in part: the first refusal, and how many there were."""
    first = refusals[0]
    if len(refusals) == 1:
        return first
    return MqttRefusedError(
        f"{first} ({len(refusals)} of {total} messages refused)", topic=first.topic, reason=first.reason
    )


def _properties(message: MqttMessage) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if message.content_type is not None:
        properties.ContentType = message.content_type
    if message.user_properties:
        properties.UserProperty = list(message.user_properties)
    return properties
