"""The poll cycle: drain → build the batch → deliver → advance.

Each round asks Boro, in one batched request, for the next read of every stream that is due (its poll interval
has passed, or a period read or snapshot is unfinished) and of every reconciliation sweep under way. What the
reading strategy (:mod:`borobridge.reading`) makes of the answers is fed to each stream's transition memory and
delivered as one :class:`~borobridge.sinks.Batch` with the new checkpoints; positions and memories advance only
once the sink confirmed it, and a failed delivery rolls them back, so the next read from the same position
yields the very same events. While one round is delivered the next is read and fed; it is delivered only once the
one before it is committed, and given up with it when that fails.

When Kafka cannot take the events of some projects (their events topic is refused), those projects' streams are
held back on a backoff of their own and every other stream is read again at once from its last commit, so their
events go on without waiting for the topic to be fixed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from borobridge import reading
from borobridge.backoff import Backoff
from borobridge.boro.client import BoroClient, PageResult
from borobridge.boro.queries import AlarmPage
from borobridge.discovery import Discovery
from borobridge.doorbell import Doorbell
from borobridge.errors import BoroError, BridgeError, EventTopicError
from borobridge.events import CloudEvent, EventFactory
from borobridge.failure_log import FailureLog
from borobridge.health import Health
from borobridge.held_streams import HeldStreams
from borobridge.metrics import Metrics
from borobridge.progress import ReadingProgress, describe
from borobridge.retry import retry_delay
from borobridge.schedule import Read, ReadPlan
from borobridge.settings import Settings
from borobridge.sinks import Batch, DeadLetter, Sink
from borobridge.streams import Stream

log = logging.getLogger(__name__)

CYCLE = "cycle"  # the key of the cycle's failure said once (streams are keyed by their id)


@dataclass
class Round:
    """One round, fed and batched, waiting for the round before it to be committed."""

    batch: Batch = field(default_factory=Batch)
    touched: list[Stream] = field(default_factory=list)
    current: list[Stream] = field(default_factory=list)  # polled successfully: their cursors are current once committed
    reads: int = 0
    failures: list[BoroError] = field(default_factory=list)


class Pipeline:
    """Polls every stream of one Boro server and delivers what changed."""

    def __init__(
        self,
        client: BoroClient,
        sink: Sink,
        settings: Settings,
        *,
        server_name: str,
        metrics: Metrics | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """``owns``: which stream ids this pipeline polls (its shard's), configured or discovered; all by default."""
        self._client = client
        self._sink = sink
        self._settings = settings
        self._factory = EventFactory(server_name)
        self._metrics = metrics or Metrics()
        self._health = health or Health(poll_interval=settings.boro.poll_interval)
        self._clock = clock
        retry = settings.boro.retry
        self._backoff = Backoff(retry.initial_backoff, retry.max_backoff)
        self._failures = FailureLog(log)
        self._discovery = Discovery(
            client, settings, server=server_name, owns=owns, metrics=self._metrics, logger=log, clock=clock
        )
        held = HeldStreams(retry.initial_backoff, retry.max_backoff, clock)
        self._plan = ReadPlan(
            poll_interval=settings.boro.poll_interval, reconcile=settings.reconcile, held=held, clock=clock
        )
        self._progress = ReadingProgress(self._metrics, log, clock)

    @property
    def streams(self) -> list[Stream]:
        """The streams polled so far."""
        return list(self._discovery.streams.values())

    def polls(self, project_id: int) -> bool:
        """This pipeline polls the project (it opened its stream)."""
        return project_id in self._discovery.streams

    async def restore(self, *, keep_cursors: bool = True) -> None:
        """Load every committed checkpoint; call once before polling (``keep_cursors=False``: start afresh)."""
        saved = await self._sink.restore()
        kept = saved if keep_cursors else {}
        self._discovery.resume_from(kept)
        log.info("restored %d of %d stream checkpoints", len(kept), len(saved))

    async def run(self, stop: asyncio.Event, doorbell: Doorbell | None = None) -> None:
        """Poll until ``stop`` is set; the cycle in flight always finishes and commits. A ring of ``doorbell``
        starts the next cycle early, except during a backoff."""
        doorbell = doorbell or Doorbell()
        while not stop.is_set():
            delay = await self.poll_once()
            self._health.progress()
            await doorbell.sleep(stop, delay, rings=not self._backoff.failures)

    async def poll_once(self) -> float:
        """One cycle: rounds until no stream is due; returns how long to wait before the next cycle."""
        started = self._clock()
        try:
            for stream in await self._discovery.new_streams():
                self._plan.add(stream)
            self._plan.begin_cycle(started)
            reads = await self._drain()
            self._progress.report(self.streams)
        except BridgeError as error:
            self._plan.end_cycle(failed=True)
            delay = retry_delay(error, self._backoff)
            if delay is None:
                raise
            if isinstance(error, BoroError):
                self._health.boro_failed(str(error), fix=error.fix)
            return self._failed(error, delay)
        if reads:
            self._health.boro_succeeded()
            self._failures.ended(CYCLE, "Boro answers again; polling every %g s", self._settings.boro.poll_interval)
            self._metrics.poll_seconds.observe(self._clock() - started)
        self._plan.end_cycle(failed=False)
        self._backoff.reset()
        return self._plan.until_due(started)

    async def _drain(self) -> int:
        """Read, feed and deliver rounds while streams are due; each round is read while the one before it is
        delivered. Returns the reads made."""
        delivering: asyncio.Task[None] | None = None
        done = 0
        try:
            for _ in range(self._settings.boro.retry.max_drain_requests):
                reads = self._plan.due()
                if not reads:
                    if delivering is None:
                        break
                    # the round in flight may give streams back to be read again
                    previous, delivering = delivering, None
                    await self._settled(previous, Round())
                    continue
                round_ = self._prepare(reads, await self._client.task_alarms([q for r in reads for q in r.queries]))
                done += len(reads)
                if delivering is not None:
                    previous, delivering = delivering, None
                    if not await self._settled(previous, round_):
                        continue  # given up with the round before it: its streams are read again
                if round_.failures and len(round_.failures) == len(reads):
                    raise round_.failures[0]  # Boro failed every read: back off
                delivering = asyncio.create_task(self._commit(round_))
            if delivering is not None:
                last, delivering = delivering, None
                await self._settled(last, Round())
        finally:
            if delivering is not None:  # this cycle failed while a round was being delivered: let that end first
                await asyncio.wait([delivering])
                if not delivering.cancelled():
                    delivering.exception()  # it committed or rolled itself back; the failure above is the news
        return done

    async def _settled(self, delivery: asyncio.Task[None], prepared: Round) -> bool:
        """Wait for the round before ``prepared``; False when it failed for held-back streams only, and
        ``prepared`` is given up with it. Any other failure gives ``prepared`` up and is raised."""
        try:
            await delivery
        except EventTopicError:
            self._read_again()
            return False
        except BaseException:
            for stream in prepared.touched:
                stream.rollback()
            raise
        return True

    def _read_again(self) -> None:
        """Roll every stream back to its last commit (nothing is in flight) and make all but the held ones due."""
        for stream in self.streams:
            stream.rollback()
        self._plan.read_again()

    def _prepare(self, reads: list[Read], results: list[PageResult]) -> Round:
        """Feed every answer to its stream and build the round's batch; nothing is delivered here."""
        round_ = Round(reads=len(reads))
        touched: dict[str, Stream] = {}
        polled: set[str] = set()
        replies = iter(results)
        for read in reads:
            pages = [next(replies) for _ in read.queries]
            try:
                checked = reading.checked_pages(read.position, pages)
            except BoroError as error:
                round_.failures.append(self._count_failure(read, error))
                continue
            if self._feed(read, checked, round_.batch, polled=read.stream.id in polled):
                touched[read.stream.id] = read.stream
            if read.purpose == "poll":
                round_.current.append(read.stream)
                polled.add(read.stream.id)
        for stream in touched.values():
            round_.batch.checkpoints.append(stream.checkpoint())
        round_.touched = list(touched.values())
        return round_

    def _feed(self, read: Read, pages: list[AlarmPage], batch: Batch, *, polled: bool) -> bool:
        """Feed one read's answer; True when the stream's checkpoint changed. ``polled``: the stream's own read
        was fed earlier in this round (a sweep's find past the floor is a miss only then)."""
        stream = read.stream
        fed = stream.feed(read.position, read.queries, pages, self._settings.boro.reply_order, read.purpose)
        self._metrics.records.inc(sum(page.size for page in pages))
        if read.purpose == "sweep":
            stream.sweep = fed.position if fed.position.windows else None
            self._progress.reconciled(stream, stream.missed(read.position, fed.transitions, polled=polled))
        elif read.purpose == "backfill":
            stream.backfill = fed.position if fed.position.busy else None
        else:
            stream.position = fed.position
            self._plan.polled(stream)
        self._failures.ended(stream.id, "stream %s: Boro answers its reads again", stream.id)
        events, unbuildable = self._factory.build_all(fed.transitions)
        batch.events += events
        rejected = stream.memory.dead_letter(fed.rejected)  # a record read again is dead-lettered once
        batch.dead_letters += [DeadLetter(stream.id, record) for record in (*rejected, *unbuildable)]
        moved = reading.resumable(fed.position) != reading.resumable(read.position)
        return bool(fed.transitions or rejected) or (read.purpose != "sweep" and moved)

    async def _commit(self, round_: Round) -> None:
        """Deliver the round's batch, then advance its streams; a failed delivery rolls them back."""
        started = self._clock()
        if round_.batch:
            try:
                await self._sink.deliver(round_.batch)
            except BridgeError as error:
                self._rollback(round_, error)
                raise
            self._metrics.publish_seconds.observe(self._clock() - started)
        self._advance(round_)

    def _rollback(self, round_: Round, error: BridgeError) -> None:
        for stream in round_.touched:
            stream.rollback()
        if isinstance(error, EventTopicError):
            self._hold_back(error)

    def _advance(self, round_: Round) -> None:
        """The sink confirmed the round: its streams' cursors and memories advance, and what it delivered counts."""
        batch = round_.batch
        self._release({s.id for s in (*round_.touched, *round_.current)})
        self._health.progress()
        self._metrics.polls.labels("ok").inc(round_.reads - len(round_.failures))
        self._metrics.dead_letters.inc(len(batch.dead_letters))
        self._count_published(batch.events)
        now = time.time()
        for stream in round_.touched:
            history = stream.committed_backfill
            stream.advance(self._settings.reconcile.window)
            self._progress.committed(stream, was_reading=history is not None)
        for stream in {s.id: s for s in (*round_.touched, *round_.current)}.values():
            self._metrics.cursor_commit_time.labels(stream.id).set(now)
        self._metrics.active_alarms.set(sum(len(s.memory.active) for s in self.streams))

    def _hold_back(self, error: EventTopicError) -> None:
        """Hold back the streams of the projects whose events Kafka cannot take, each on its own backoff."""
        for project in error.projects:
            stream = self._discovery.streams.get(project)
            if stream is None:
                continue
            delay = self._plan.hold(stream)
            self._health.stream_held(stream.id, str(error))
            message = "stream %s: Kafka cannot take its events (%s); it is read again in %.1f s, the others go on"
            fields = {"stream": stream.id, "project": project}
            self._failures.failed(f"{stream.id} events", error, message, stream.id, error, delay, extra=fields)

    def _release(self, delivered: set[str]) -> None:
        for stream in delivered:
            if self._plan.release(stream):
                self._health.stream_released(stream)
                self._failures.ended(f"{stream} events", "stream %s: Kafka takes its events again", stream)

    def _count_published(self, events: list[CloudEvent]) -> None:
        """Count delivered transitions, once per label set rather than once per event."""
        kinds = Counter(
            (event.transition.value, event.attributes["severity"], event.attributes["triggergroup"]) for event in events
        )
        for (transition, level, group), count in kinds.items():
            self._metrics.transitions.labels(transition, level, group).inc(count)

    def _count_failure(self, read: Read, error: BoroError) -> BoroError:
        self._metrics.polls.labels("error").inc()
        self._metrics.errors.labels(error.kind).inc()
        self._plan.failed(read)  # the stream's other lanes go on; the next cycle tries again
        message = "stream %s: read failed, position stays at %s: %s"
        where = describe(read.position)
        fields = {"stream": read.stream.id, "project": read.stream.base.project_id}
        self._failures.failed(
            read.stream.id, error, message, read.stream.id, where, error, once=error.permanent, extra=fields
        )
        return error

    def _failed(self, error: BridgeError, delay: float) -> float:
        if isinstance(error, BoroError) and error.permanent:  # asking again soon cannot help: at the longest backoff
            message = "Boro refuses the bridge (%s): fix your configuration (%s); asking again every %.1f s"
            self._failures.failed(CYCLE, error, message, error, error.fix, delay)
            return delay
        self._metrics.cycle_retries.inc()
        self._failures.failed(CYCLE, error, "poll cycle failed (%s); next attempt in %.1f s", error, delay)
        return max(delay, 0.0)
