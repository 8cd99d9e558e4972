"""Membership of the bridge's shard group: the consumer group over the checkpoint topic whose assignment says which
process polls which shards (see :mod:`borobridge.kafka.sharding`).

The member never reads a record: every partition it is given is paused at once, and its loop only keeps calling
the consumer so that it stays in the group. The group's rebalances are eager, so a partition is revoked from its
owner (and the owner's shard stopped, within a bound) before anyone is assigned it; a member that missed its
session is revoked when it rejoins, and by then its shards' producers have been fenced by their new owners.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from borobridge.errors import KafkaClientError, KafkaUnreachableError
from borobridge.kafka.connection import connection_options
from borobridge.kafka.errors import quoted, translated
from borobridge.kafka.tasks import bounded, stop_quietly
from borobridge.settings import KafkaSettings

log = logging.getLogger(__name__)

# 10 s: Kafka's own default. A dead replica's shards move after this much silence; shorter makes a GC pause or a
# slow network cost a rebalance (every shard restarts its producer), longer delays the takeover.
SESSION_TIMEOUT_MS: Final = 10_000
HEARTBEAT_INTERVAL_MS: Final = 3_000
# How long the group waits for every member to rejoin during a rebalance: a revocation (bounded by the caller)
# must fit in it, or the member is dropped from the generation.
REBALANCE_TIMEOUT_MS: Final = 30_000
IDLE_POLL_MS: Final = 500


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one rebalance gave this member: ``shards`` of ``count``, in ``generation``, as ``member``."""

    shards: frozenset[int]
    count: int
    generation: int
    member: str


Assigned = Callable[[Assignment], Awaitable[None]]
Revoked = Callable[[set[int]], Awaitable[None]]


def shard_group(bridge_name: str) -> str:
    """The consumer group of a bridge's shard owners."""
    return f"borobridge-{bridge_name}-shards"


class ShardGroup:
    """One member of the shard group; ``async with`` joins (asynchronously) and leaves, :meth:`run` stays in it.

    ``assigned`` is called with every assignment (maybe empty), ``revoked`` at the start of every rebalance with
    what this member owned; both are awaited before the rebalance goes on.
    """

    def __init__(self, settings: KafkaSettings, bridge_name: str, *, assigned: Assigned, revoked: Revoked) -> None:
        self._topic = settings.topics.checkpoints
        self._name = bridge_name
        self._timeout = settings.request_timeout_ms / 1000
        self._client: Any = AIOKafkaConsumer(
            group_id=shard_group(bridge_name),
            enable_auto_commit=False,
            isolation_level="read_committed",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            **connection_options(settings),
        )
        self._listener = _Listener(self, assigned, revoked)
        self._started = False

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError("ShardGroup is already started; use one instance per async with block")
        try:
            with translated():
                await bounded(self._client.start(), self._timeout)
        except (KafkaClientError, TimeoutError) as exc:
            await self._stop()
            raise KafkaUnreachableError(f"cannot join consumer group {shard_group(self._name)}: {quoted(exc)}") from exc
        except BaseException:
            await self._stop()
            raise
        self._started = True
        self._client.subscribe(topics=[self._topic], listener=self._listener)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Take part in the group until ``stop`` is set; the rebalances call back meanwhile."""
        if not self._started:
            raise RuntimeError("ShardGroup.run before start: enter it with `async with` first")
        while not stop.is_set():
            with translated():
                await self._client.getmany(timeout_ms=IDLE_POLL_MS)  # nothing to fetch: every partition is paused

    @property
    def generation(self) -> int:
        """The group generation this member last joined (aiokafka offers no public view of it)."""
        generation: int = self._client._coordinator.generation
        return generation

    @property
    def member(self) -> str:
        """This member's id in the group."""
        member: str = self._client._coordinator.member_id
        return member

    def assignment(self, shards: set[int]) -> Assignment:
        """Pause ``shards`` (the member only holds them, it fetches nothing) and describe the assignment."""
        self._client.pause(*(TopicPartition(self._topic, shard) for shard in shards))
        count = len(self._client.partitions_for_topic(self._topic) or ())
        return Assignment(frozenset(shards), count, self.generation, self.member)

    async def _stop(self) -> None:
        await asyncio.sleep(0)  # aiokafka re-raises the cancellation of a coordinator task that never ran
        await stop_quietly(self._client.stop, self._client._client.close)  # its connections: no public view


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type marker
    def __init__(self, group: ShardGroup, assigned: Assigned, revoked: Revoked) -> None:
        self._group = group
        self._assigned = assigned
        self._revoked = revoked

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self._revoked({partition.partition for partition in revoked})

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await self._assigned(self._group.assignment({partition.partition for partition in assigned}))
