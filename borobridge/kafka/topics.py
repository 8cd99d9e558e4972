"""Topic creation and policy checks: missing topics are created right, wrong ones refused with the fix."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import NewTopic

from borobridge.errors import KafkaClientError, KafkaDeliveryError, TopicPolicyError
from borobridge.kafka.admin import Admin
from borobridge.kafka.errors import quoted
from borobridge.settings import KafkaTopicSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
DESCRIBE_ATTEMPTS = 10
DESCRIBE_PAUSE = 0.5


@dataclass(frozen=True)
class TopicSpec:
    """A topic the bridge writes, and the cleanup policy it needs."""

    name: str
    policy: str
    configs: dict[str, str]


def fixed_topics(topics: KafkaTopicSettings) -> list[TopicSpec]:
    """The topics every bridge needs, whatever projects it polls."""
    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec(topics.active, "compact", compact),
        TopicSpec(topics.checkpoints, "compact", compact),
        TopicSpec(topics.schemas, "compact", compact),
        TopicSpec(topics.dead_letters, "delete", {"cleanup.policy": "delete"}),
    ]


def event_topic(topics: KafkaTopicSettings, project_id: int) -> TopicSpec:
    """The events topic of one project."""
    configs = {"cleanup.policy": "delete"}
    if topics.events_retention_ms is not None:
        configs["retention.ms"] = str(topics.events_retention_ms)
    return TopicSpec(topics.events.format(project_id=project_id), "delete", configs)


class TopicManager:
    """Makes sure each topic exists with the right policy, once per topic and process."""

    def __init__(self, admin: Admin, settings: KafkaTopicSettings) -> None:
        self._admin = admin
        self._settings = settings
        self._checked: set[str] = set()

    async def ensure(self, specs: list[TopicSpec]) -> None:
        """Create what is missing (when allowed) and check every policy; raise TopicPolicyError otherwise."""
        pending = list({spec.name: spec for spec in specs if spec.name not in self._checked}.values())
        if not pending:
            return
        try:
            existing = await self._admin.topic_names()
            await self._create([spec for spec in pending if spec.name not in existing])
            policies = await self._policies([spec.name for spec in pending])
        except KafkaClientError as exc:
            raise KafkaDeliveryError(f"cannot inspect or create Kafka topics: {quoted(exc)}") from exc
        for spec in pending:
            _check(spec, policies.get(spec.name))
            self._checked.add(spec.name)

    async def partitions(self, topic: str) -> list[int]:
        """The partition numbers of an existing topic (none when it does not exist)."""
        try:
            partitions = await self._admin.partitions([topic])
        except KafkaClientError as exc:
            raise KafkaDeliveryError(f"cannot describe Kafka topic {topic}: {quoted(exc)}") from exc
        return [partition.partition for partition in partitions]

    async def _create(self, missing: list[TopicSpec]) -> None:
        if not missing:
            return
        names = ", ".join(spec.name for spec in missing)
        if not self._settings.create:
            raise TopicPolicyError(f"Kafka topics {names} do not exist and kafka.topics.create is false: create them")
        new = [_new_topic(spec, self._settings) for spec in missing]
        for name, code, message in await self._admin.create(new):
            if code not in {0, TOPIC_ALREADY_EXISTS}:
                raise TopicPolicyError(f"cannot create Kafka topic {name}: error {code} {message}")
        log.info("created Kafka topics %s", names)

    async def _policies(self, names: list[str]) -> dict[str, str]:
        """Each topic's cleanup.policy; a topic just created may take a moment to show its configuration."""
        policies: dict[str, str] = {}
        for _ in range(DESCRIBE_ATTEMPTS):
            unknown = [name for name in names if name not in policies]
            if not unknown:
                break
            policies |= await self._admin.cleanup_policies(unknown)
            await asyncio.sleep(0 if len(policies) == len(names) else DESCRIBE_PAUSE)
        return policies


def _new_topic(spec: TopicSpec, settings: KafkaTopicSettings) -> NewTopic:
    """A creation request; replication -1 leaves the factor to the broker's default (KIP-464)."""
    return NewTopic(
        spec.name,
        settings.partitions,
        settings.replication_factor,
        replica_assignments={} if settings.replication_factor == -1 else None,
        topic_configs=spec.configs,
    )


def _check(spec: TopicSpec, found: str | None) -> None:
    if found == spec.policy:
        return
    raise TopicPolicyError(
        f"Kafka topic {spec.name} has cleanup.policy={found}, but borobridge needs cleanup.policy={spec.policy}. "
        f"Fix: kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
        f"--add-config cleanup.policy={spec.policy}, or point kafka.topics at another topic"
    )
