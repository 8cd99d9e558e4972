"""The Kafka admin client behind a typed adapter: topics, partitions, configurations, the cluster's brokers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from borobridge.errors import KafkaClientError, KafkaDeliveryError
from borobridge.kafka.connection import connection_options, connection_problem
from borobridge.kafka.errors import translated
from borobridge.kafka.records import Partition
from borobridge.settings import KafkaSettings


class Admin:
    """One admin client; every failure of the client raises :class:`KafkaClientError`."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._client: Any = AIOKafkaAdminClient(**connection_options(settings))

    async def start(self) -> None:
        """Connect to the cluster."""
        with translated():
            await self._client.start()

    async def close(self) -> None:
        """Close the connections."""
        with translated():
            await self._client.close()

    async def topic_names(self) -> set[str]:
        """Every topic of the cluster."""
        with translated():
            return set(await self._client.list_topics())

    async def partitions(self, topics: list[str]) -> list[Partition]:
        """Every partition of the given topics, in order; none of a topic that does not exist."""
        if not topics:
            return []
        with translated():
            described = await self._client.describe_topics(topics)
        return sorted(
            Partition(topic["topic"], partition["partition"])
            for topic in described
            for partition in topic["partitions"]
        )

    async def create(self, topics: list[NewTopic]) -> list[tuple[str, int, str]]:
        """Ask for new topics; each topic's name, error code (0: created) and error message."""
        with translated():
            response = await self._client.create_topics(topics)
        return [(name, code, rest[0] if rest else "") for name, code, *rest in response.topic_errors]

    async def cleanup_policies(self, topics: list[str]) -> dict[str, str]:
        """The cleanup.policy of each topic that shows one yet."""
        resources = [ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None}) for name in topics]
        with translated():
            responses = await self._client.describe_configs(resources)
        policies: dict[str, str] = {}
        for response in responses:
            for _code, _message, _kind, topic, entries, *_ in response.resources:
                values = [entry[1] for entry in entries if entry[0] == "cleanup.policy"]
                if values:
                    policies[topic] = values[0]
        return policies

    async def brokers(self) -> list[str]:
        """The brokers the cluster's metadata lists, as ``host:port``."""
        with translated():
            cluster = await self._client.describe_cluster()
        return [f"{broker['host']}:{broker['port']}" for broker in cluster["brokers"]]


async def cluster_brokers(settings: KafkaSettings) -> list[str]:
    """The brokers the cluster's metadata lists, as ``host:port``, read within ``kafka.request_timeout_ms``."""
    admin = Admin(settings)
    try:
        async with asyncio.timeout(settings.request_timeout_ms / 1000):
            await admin.start()
            return await admin.brokers()
    except (KafkaClientError, TimeoutError) as exc:
        problem = await connection_problem(settings, exc)
        raise KafkaDeliveryError(f"cannot read Kafka metadata: {problem}") from exc
    finally:
        with contextlib.suppress(KafkaClientError, TimeoutError, OSError):
            await admin.close()
