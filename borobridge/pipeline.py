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
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from borobridge import reading
from borobridge.backoff import Backoff
from borobridge.boro.client import BoroClient, PageResult
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.checkpoint import Checkpoint
from borobridge.doorbell import Doorbell
from borobridge.errors import BoroError, BridgeError, EventTopicError
from borobridge.events import CloudEvent, EventFactory
from borobridge.failure_log import FailureLog
from borobridge.health import Health
from borobridge.held_streams import HeldStreams
from borobridge.metrics import Metrics
from borobridge.reading import Position
from borobridge.retry import retry_delay
from borobridge.settings import Settings
from borobridge.sinks import Batch, DeadLetter, Sink
from borobridge.streams import Stream, open_stream, stream_id
from borobridge.transitions import AlarmTransition

log = logging.getLogger(__name__)

CYCLE = "cycle"  # the keys of the failures said once (streams are keyed by their id)
DISCOVERY = "discovery"
BACKFILL_READS_PER_ROUND = 4  # history reads in one round, streams taking turns: live reads never wait behind them
BACKFILL_LOG_INTERVAL = 60.0  # seconds between the progress lines of the history reads
HEAD_START_CYCLES = 10  # cycles at most that a stream's live lane waits for its history while history reads fail


@dataclass(frozen=True, slots=True)
class Read:
    """One read step of one stream: its own position moved on, its first start's history read, or its
    reconciliation sweep."""

    stream: Stream
    purpose: Literal["poll", "backfill", "sweep"]
    position: Position
    queries: list[AlarmQuery]


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
        self._owns = owns
        self._others: set[int] = set()  # projects whose streams belong to other shards
        self._sink = sink
        self._settings = settings
        self._server = server_name
        self._factory = EventFactory(server_name)
        self._metrics = metrics or Metrics()
        self._health = health or Health(poll_interval=settings.boro.poll_interval)
        self._clock = clock
        self._saved: dict[str, Checkpoint] = {}
        self._streams: dict[int, Stream] = {}
        self._due: dict[str, float] = {}  # when each stream is read next in this cycle (this process's clock)
        self._next_sweep: dict[str, float] = {}
        self._next_discovery = 0.0
        self._backfill_turn = 0  # which backfilling stream reads first in the next round
        self._backfill_resting: set[str] = set()  # history reads that failed in this cycle
        self._head_start: dict[str, int] = {}  # streams whose live lane waits for their history: cycles left
        self._next_progress_log = 0.0
        self._backoff = Backoff(settings.boro.retry.initial_backoff, settings.boro.retry.max_backoff)
        self._failures = FailureLog(log)
        self._held = HeldStreams(settings.boro.retry.initial_backoff, settings.boro.retry.max_backoff, clock)

    @property
    def streams(self) -> list[Stream]:
        """The streams polled so far."""
        return list(self._streams.values())

    async def restore(self, *, keep_cursors: bool = True) -> None:
        """Load every committed checkpoint; call once before polling (``keep_cursors=False``: start afresh)."""
        saved = await self._sink.restore()
        self._saved = saved if keep_cursors else {}
        log.info("restored %d of %d stream checkpoints", len(self._saved), len(saved))

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
            await self._discover()
            self._due = dict.fromkeys((stream.id for stream in self._streams.values()), started)
            self._backfill_resting.clear()
            reads = await self._drain()
            self._log_backfill_progress()
        except BridgeError as error:
            self._end_head_starts(cycle_failed=True)
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
        self._end_head_starts(cycle_failed=False)
        self._backoff.reset()
        return self._until_due(started)

    async def _drain(self) -> int:
        """Read, feed and deliver rounds while streams are due; each round is read while the one before it is
        delivered. Returns the reads made."""
        for held in self._held.waiting():
            self._due[held] = math.inf
        delivering: asyncio.Task[None] | None = None
        done = 0
        try:
            for _ in range(self._settings.boro.retry.max_drain_requests):
                reads = self._due_reads()
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
        now = self._clock()
        for stream in self._streams.values():
            stream.rollback()
            if self._due.get(stream.id) != math.inf:
                self._due[stream.id] = now

    def _due_reads(self) -> list[Read]:
        """The next read of every stream that is due, and of every sweep under way, after a few history reads
        (their records come first, so a round that reads both gives a task's history before its live changes)."""
        now = self._clock()
        reads = self._backfill_reads()
        for stream in self._streams.values():
            due = self._due.get(stream.id, 0.0)
            if now >= due and not self._waits_for_history(stream):
                reads.append(Read(stream, "poll", stream.position, stream.queries(stream.position, "poll")))
            elif due == math.inf:
                continue  # failed in this cycle: the next cycle tries again
            sweep = stream.sweep or self._start_sweep(stream, now)
            if sweep is not None:
                reads.append(Read(stream, "sweep", sweep, stream.queries(sweep, "sweep")))
        return reads

    def _waits_for_history(self, stream: Stream) -> bool:
        """Whether the stream's live lane, its snapshot read, waits for its history in this cycle (its head start).

        A new stream's history, bounded where its live lane starts, is given the stream's first cycle to be read
        whole before the live lane reads on; a short one is then delivered before every later change, so each
        task's order holds across the two lanes. A longer one goes on beside the live lane from the next cycle.
        """
        return stream.id in self._head_start and stream.backfill is not None and not stream.position.snapshot

    def _end_head_starts(self, *, cycle_failed: bool) -> None:
        """At the end of a cycle: the head starts given are over, except where a read of the stream failed
        (then the next cycle tries again, :data:`HEAD_START_CYCLES` at most)."""
        for stream in self.streams:
            left = self._head_start.get(stream.id)
            if left is None:
                continue
            failed = cycle_failed or stream.id in self._backfill_resting or self._due.get(stream.id) == math.inf
            if stream.backfill is None or not failed or left <= 1:
                del self._head_start[stream.id]
            else:
                self._head_start[stream.id] = left - 1

    def _backfill_reads(self) -> list[Read]:
        """The next history read of at most :data:`BACKFILL_READS_PER_ROUND` streams, taking turns; a history waits
        for its bound until its live lane's snapshot is read, and a stream held back waits for its backoff."""
        resting = self._backfill_resting | set(self._held.waiting())
        waiting = [
            s
            for s in self._streams.values()
            if s.backfill is not None and not s.position.snapshot and s.id not in resting
        ]
        if not waiting:
            return []
        start = self._backfill_turn % len(waiting)
        chosen = (waiting[start:] + waiting[:start])[:BACKFILL_READS_PER_ROUND]
        self._backfill_turn = start + len(chosen)
        return [Read(s, "backfill", s.backfill, s.queries(s.backfill, "backfill")) for s in chosen if s.backfill]

    def _start_sweep(self, stream: Stream, now: float) -> Position | None:
        options = self._settings.reconcile
        if stream.position.busy or stream.backfill is not None:  # a sweep meeting unread history is no news
            return None
        if now < self._next_sweep.setdefault(stream.id, now + options.interval):
            return None
        self._next_sweep[stream.id] = now + options.interval
        clocks = [s.position.clock for s in self._streams.values() if s.position.clock is not None]
        return stream.start_sweep(options.window, max(clocks, default=None))

    def _prepare(self, reads: list[Read], results: list[PageResult]) -> Round:
        """Feed every answer to its stream and build the round's batch; nothing is delivered here."""
        round_ = Round(reads=len(reads))
        touched: dict[str, Stream] = {}
        replies = iter(results)
        for read in reads:
            pages = [next(replies) for _ in read.queries]
            try:
                checked = _checked(read.position, pages)
            except BoroError as error:
                round_.failures.append(self._count_failure(read, error))
                continue
            if self._feed(read, checked, round_.batch):
                touched[read.stream.id] = read.stream
            if read.purpose == "poll":
                round_.current.append(read.stream)
        for stream in touched.values():
            round_.batch.checkpoints.append(stream.checkpoint())
        round_.touched = list(touched.values())
        return round_

    def _feed(self, read: Read, pages: list[AlarmPage], batch: Batch) -> bool:
        """Feed one read's answer; True when the stream's checkpoint changed."""
        stream = read.stream
        fed = stream.feed(read.position, read.queries, pages, self._settings.boro.reply_order, read.purpose)
        self._metrics.records.inc(sum(page.size for page in pages))
        if read.purpose == "sweep":
            stream.sweep = fed.position if fed.position.windows else None
            self._count_reconciled(stream, stream.missed(read.position, fed.transitions))
        elif read.purpose == "backfill":
            stream.backfill = fed.position if fed.position.busy else None
        else:
            stream.position = fed.position
            pause = 0.0 if fed.position.busy else self._settings.boro.poll_interval
            self._due[stream.id] = self._clock() + pause
        self._failures.ended(stream.id, "stream %s: Boro answers its reads again", stream.id)
        events, unbuildable = self._factory.build_all(fed.transitions)
        batch.events += events
        rejected = stream.memory.dead_letter(fed.rejected)  # a record read again is dead-lettered once
        batch.dead_letters += [DeadLetter(stream.id, record) for record in (*rejected, *unbuildable)]
        moved = reading.resumable(fed.position) != reading.resumable(read.position)
        return bool(fed.transitions or rejected) or (read.purpose != "sweep" and moved)

    def _count_reconciled(self, stream: Stream, transitions: Iterable[AlarmTransition]) -> None:
        for transition in transitions:
            self._metrics.reconciled.labels(stream.id).inc()
            log.warning(
                "stream %s: the reconciliation sweep found record %d (%s) that the token path missed",
                stream.id,
                transition.record.id,
                transition.kind,
            )

    async def _commit(self, round_: Round) -> None:
        batch = round_.batch
        started = self._clock()
        if batch:
            try:
                await self._sink.deliver(batch)
            except BridgeError as error:
                for stream in round_.touched:
                    stream.rollback()
                if isinstance(error, EventTopicError):
                    self._hold_back(error)
                raise
            self._metrics.publish_seconds.observe(self._clock() - started)
        self._release({s.id for s in (*round_.touched, *round_.current)})
        self._health.progress()
        self._metrics.polls.labels("ok").inc(round_.reads - len(round_.failures))
        self._metrics.dead_letters.inc(len(batch.dead_letters))
        self._count_published(batch.events)
        now = time.time()
        for stream in round_.touched:
            history = stream.committed_backfill
            stream.advance(self._settings.reconcile.window)
            self._show_backfill(stream, was_reading=history is not None)
        for stream in {s.id: s for s in (*round_.touched, *round_.current)}.values():
            self._metrics.cursor_commit_time.labels(stream.id).set(now)
        self._metrics.active_alarms.set(sum(len(s.memory.active) for s in self._streams.values()))

    def _hold_back(self, error: EventTopicError) -> None:
        """Hold back the streams of the projects whose events Kafka cannot take, each on its own backoff."""
        for project in error.projects:
            stream = self._streams.get(project)
            if stream is None:
                continue
            delay = self._held.hold(stream.id)
            self._due[stream.id] = math.inf
            self._health.stream_held(stream.id, str(error))
            message = "stream %s: Kafka cannot take its events (%s); it is read again in %.1f s, the others go on"
            fields = {"stream": stream.id, "project": project}
            self._failures.failed(f"{stream.id} events", error, message, stream.id, error, delay, extra=fields)

    def _release(self, delivered: set[str]) -> None:
        for stream in delivered:
            if self._held.release(stream):
                self._health.stream_released(stream)
                self._failures.ended(f"{stream} events", "stream %s: Kafka takes its events again", stream)

    def _show_backfill(self, stream: Stream, *, was_reading: bool) -> None:
        """Set the stream's history gauge from its committed history read; say so once it reached the present."""
        remaining = reading.backfill_remaining(stream.committed_backfill, stream.committed.clock)
        if remaining is not None:
            self._metrics.backfill_remaining.labels(stream.id).set(remaining)
        if was_reading and stream.committed_backfill is None:
            log.info("stream %s: history read up to the live alarms; the first start is complete", stream.id)

    def _log_backfill_progress(self) -> None:
        """Every :data:`BACKFILL_LOG_INTERVAL`, one line per stream whose history is still being read."""
        now = self._clock()
        if now < self._next_progress_log:
            return
        self._next_progress_log = now + BACKFILL_LOG_INTERVAL
        for stream in self._streams.values():
            if stream.committed_backfill is None:
                continue
            remaining = reading.backfill_remaining(stream.committed_backfill, stream.committed.clock)
            left = "unknown yet" if remaining is None else f"{remaining} s of Boro time"
            where = _describe(stream.committed_backfill)
            log.info("stream %s: reading history, at %s, %s to go", stream.id, where, left)

    def _count_published(self, events: list[CloudEvent]) -> None:
        """Count delivered transitions, once per label set rather than once per event."""
        kinds = Counter(
            (event.transition.value, event.attributes["severity"], event.attributes["triggergroup"]) for event in events
        )
        for (transition, level, group), count in kinds.items():
            self._metrics.transitions.labels(transition, level, group).inc(count)

    async def _discover(self) -> None:
        projects = self._settings.boro.projects
        if projects != "all":
            self._ensure_streams(projects)
            return
        if self._clock() < self._next_discovery:
            return
        interval = self._settings.boro.discovery_interval
        try:
            self._ensure_streams(await self._client.project_ids())
        except BoroError as error:
            if not self._streams:
                raise  # nothing to poll: the cycle fails
            message = "project discovery failed (%s); the known projects are still polled, discovery retried in %g s"
            self._failures.failed(DISCOVERY, error, message, error, interval)
        else:
            self._failures.ended(DISCOVERY, "project discovery works again")
        self._next_discovery = self._clock() + interval

    def _ensure_streams(self, project_ids: Iterable[int]) -> None:
        boro = self._settings.boro
        for project_id in project_ids:
            if project_id not in self._streams and project_id not in self._others:
                stream_key = stream_id(self._server, project_id, boro)
                if self._owns is not None and not self._owns(stream_key):
                    self._others.add(project_id)  # another shard's
                    continue
                saved = self._saved.get(stream_key)
                stream = open_stream(self._server, project_id, boro, saved, self._settings.first_start)
                self._streams[project_id] = stream
                self._metrics.stream_opened(stream.id, reading_history=stream.backfill is not None)
                log.info("stream %s opened at %s", stream.id, _describe(stream.position))
                if stream.backfill is not None:
                    self._head_start[stream.id] = HEAD_START_CYCLES
                    where = _describe(stream.backfill)
                    lane = "beside the live alarms" if stream.history_beside else "before the live alarms"
                    log.info("stream %s: reading history from %s %s", stream.id, where, lane)

    def _until_due(self, started: float) -> float:
        """Cycles start every poll interval (a record waits at most one interval), or at once while a sweep or a
        period read or a history read has more to do than one cycle's requests."""
        held = set(self._held.waiting())
        if any((s.sweep or s.backfill or s.position.busy) and s.id not in held for s in self._streams.values()):
            return 0.0
        return max(0.0, started + self._settings.boro.poll_interval - self._clock())

    def _count_failure(self, read: Read, error: BoroError) -> BoroError:
        self._metrics.polls.labels("error").inc()
        self._metrics.errors.labels(error.kind).inc()
        if read.purpose == "backfill":
            self._backfill_resting.add(read.stream.id)  # the live lane goes on; the next cycle tries again
        else:
            self._due[read.stream.id] = math.inf
        message = "stream %s: read failed, position stays at %s: %s"
        where = _describe(read.position)
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


def _checked(position: Position, results: list[PageResult]) -> list[AlarmPage]:
    """The pages of one read, or the first error among them (a refused token counts as one)."""
    pages: list[AlarmPage] = []
    for result in results:
        if isinstance(result, BoroError):
            raise result
        reading.check_reply(position, result)
        pages.append(result)
    return pages


def _describe(position: Position) -> str:
    if position.snapshot:
        return f"the active-state snapshot (page {position.page})"
    if position.windows:
        window = position.windows[0]
        return f"period {window.low}..{'' if window.high is None else window.high}"
    return f"token {position.token}"
