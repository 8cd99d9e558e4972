"""Shards: the streams of one bridge name shared among its processes, as the shard group assigns them.

On assignment each shard starts: a Kafka sink with the shard's transactional id (whose start fences the shard's
previous owner and ends its open transaction), the shard's checkpoints restored, a pipeline polling the shard's
streams. On revocation each shard's loop is asked to stop; a cycle still running after :data:`REVOKE_GRACE` is
cancelled, and its transaction is aborted or fenced by the next owner. A fence drops the shard it hit, with one
log line, and the process stays in the group: the rebalance that gave the shard away revokes it here as well.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from borobridge.backoff import Backoff
from borobridge.checkpoint import Checkpoint
from borobridge.doorbell import Doorbells
from borobridge.errors import BridgeError, CursorAheadError, FencedError
from borobridge.health import Health, ReportingSink
from borobridge.kafka.group import Assignment
from borobridge.kafka.sharding import ShardClaim
from borobridge.kafka.sink import KafkaSink
from borobridge.kafka.tasks import CANCEL_GRACE
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.retry import retry_delay
from borobridge.settings import KafkaSettings
from borobridge.sinks import Batch, Sink

log = logging.getLogger(__name__)

# A revoked shard's cycle in flight gets this long to commit; the group's rebalance timeout leaves room for it.
REVOKE_GRACE: Final = 5.0
IDLE_PROGRESS: Final = 1.0
WAITING: Final = "waiting for the shard group to assign this process its shards"

PipelineFor = Callable[[Sink, ShardClaim], Pipeline]


@dataclass(slots=True)
class _Owned:
    claim: ShardClaim
    stop: asyncio.Event
    task: asyncio.Task[None]


class Shards:
    """Runs one pipeline per shard this process owns; the shard group calls :meth:`assigned` and :meth:`revoked`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        bridge_name: str,
        pipeline_for: PipelineFor,
        *,
        health: Health,
        metrics: Metrics,
        backoff: Callable[[], Backoff],
        keep_cursors: bool = True,
        doorbells: Doorbells | None = None,
    ) -> None:
        self._kafka = kafka
        self._name = bridge_name
        self._pipeline_for = pipeline_for
        self._health = health
        self._metrics = metrics
        self._backoff = backoff
        self._keep_cursors = keep_cursors
        self._doorbells = doorbells
        self._owned: dict[int, _Owned] = {}
        self._pipelines: dict[int, Pipeline] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._rebalance_started = time.monotonic()
        health.group_waiting(WAITING)

    @property
    def pipelines(self) -> list[Pipeline]:
        """The pipelines of the shards polled now."""
        return list(self._pipelines.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the task group the shards run in until ``stop`` is set; then let every shard finish its cycle."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            try:
                while not stop.is_set():
                    await _wait(stop, IDLE_PROGRESS)
                    if not self._owned:
                        self._health.progress()  # a spare member is live: it is ready to take shards over
            finally:
                self._tasks = None
                await self.revoked(set(self._owned))

    async def assigned(self, assignment: Assignment) -> None:
        """Start every shard of ``assignment`` not running here yet."""
        if self._tasks is None:
            return  # stopping: the shards stay with the group, which gives them to another member
        self._metrics.rebalances.inc()
        for number in sorted(assignment.shards - self._owned.keys()):
            claim = ShardClaim(number, assignment.count, assignment.generation, assignment.member)
            stop = asyncio.Event()
            task = self._tasks.create_task(self._run_shard(claim, stop), name=f"shard-{number}")
            self._owned[number] = _Owned(claim, stop, task)
        self._metrics.shards_owned.set(len(self._owned))
        self._health.group_joined()
        self._health.mark_restored()
        shards = ", ".join(map(str, sorted(assignment.shards))) or "none"
        log.info(
            "shard group generation %d: this process owns shards %s of %d",
            assignment.generation,
            shards,
            assignment.count,
        )

    async def revoked(self, shards: set[int]) -> None:
        """Stop every shard of ``shards``: each cycle in flight commits within :data:`REVOKE_GRACE`, or is cancelled."""
        self._rebalance_started = time.monotonic()
        self._health.group_waiting(WAITING)
        releasing = [self._owned.pop(number) for number in sorted(shards) if number in self._owned]
        self._metrics.shards_owned.set(len(self._owned))
        for owned in releasing:
            owned.stop.set()
        tasks = [owned.task for owned in releasing]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=REVOKE_GRACE)
        if late:
            numbers = ", ".join(task.get_name() for task in late)
            log.warning(
                "%s did not finish their cycle within %.0f s of the revocation; cancelled", numbers, REVOKE_GRACE
            )
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=CANCEL_GRACE)

    async def _run_shard(self, claim: ShardClaim, stop: asyncio.Event) -> None:
        """Serve one shard until it is revoked; a fence drops it, a start that fails is retried with backoff."""
        backoff = self._backoff()
        sink = f"kafka shard {claim.number}"
        try:
            while not stop.is_set():
                try:
                    await self._serve(claim, stop, sink)
                except CursorAheadError as error:
                    log.warning("shard %d: %s; it restarts from the committed cursors", claim.number, error)
                except FencedError as error:
                    self._metrics.errors.labels(error.kind).inc()
                    log.warning(
                        "shard %d was fenced (%s): another process of the shard group owns it now; this process "
                        "drops it and stays in the group",
                        claim.number,
                        error,
                    )
                    return
                except BridgeError as error:
                    delay = retry_delay(error, backoff)
                    if delay is None:
                        raise
                    log.warning("shard %d cannot start: %s; trying again in %.1f s", claim.number, error, delay)
                    await _wait(stop, delay)
        finally:
            self._health.forget_sink(sink)
            if (owned := self._owned.get(claim.number)) is not None and owned.claim == claim:
                del self._owned[claim.number]
                self._metrics.shards_owned.set(len(self._owned))

    async def _serve(self, claim: ShardClaim, stop: asyncio.Event, sink_name: str) -> None:
        async with KafkaSink(self._kafka, self._name, claim=claim) as kafka:
            reporting = ReportingSink(kafka, self._health, sink_name, metrics=self._metrics)
            timed = _Takeover(reporting, self._metrics, self._rebalance_started)
            pipeline = self._pipeline_for(timed, claim)
            await pipeline.restore(keep_cursors=self._keep_cursors)
            self._pipelines[claim.number] = pipeline
            doorbells = self._doorbells
            doorbell = doorbells.open(claim.number, pipeline.polls) if doorbells is not None else None
            try:
                await pipeline.run(stop, doorbell)
            finally:
                self._pipelines.pop(claim.number, None)
                if doorbells is not None:
                    doorbells.close(claim.number)


class _Takeover:
    """A sink that times the first commit of a shard from the rebalance that assigned it here."""

    def __init__(self, sink: Sink, metrics: Metrics, rebalance_started: float) -> None:
        self._inner = sink
        self._metrics = metrics
        self._since: float | None = rebalance_started

    async def restore(self) -> dict[str, Checkpoint]:
        return await self._inner.restore()

    async def deliver(self, batch: Batch) -> None:
        await self._inner.deliver(batch)
        if self._since is not None:
            self._metrics.shard_takeover_seconds.observe(time.monotonic() - self._since)
            self._since = None


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return
