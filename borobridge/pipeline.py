"""The poll cycle: fetch after each cursor, find transitions, build events, deliver, commit.

A round is delivered as one :class:`~borobridge.delivery.Batch` (events, dead letters and checkpoints together),
and cursors and transition memories advance only once the committer confirmed it. A failed delivery rolls the
memories back, so the next poll from the same cursor yields the very same events. While one round is being
delivered the next is read and fed, so the CPU works while the sink waits for its broker; that round is
delivered only once the one before it is committed, and given up with it when it fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from borobridge.backoff import Backoff
from borobridge.boro.backfill import BackfillStep, backfill
from borobridge.boro.client import BoroClient, PageResult
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord
from borobridge.checkpoint import Checkpoint
from borobridge.delivery import Batch, Committer, DeadLetter
from borobridge.errors import BoroError, BridgeError
from borobridge.events import CloudEvent, EventFactory
from borobridge.health import Health
from borobridge.metrics import Metrics
from borobridge.settings import FirstStartSettings, Settings
from borobridge.streams import Stream, open_stream, stream_id

log = logging.getLogger(__name__)

Round = Sequence[tuple[AlarmQuery, PageResult]]


class Pipeline:
    """Polls every stream of one Boro server and delivers what changed."""

    def __init__(
        self,
        client: BoroClient,
        committer: Committer,
        settings: Settings,
        *,
        server_name: str,
        metrics: Metrics | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._committer = committer
        self._settings = settings
        self._server = server_name
        self._factory = EventFactory(server_name)
        self._metrics = metrics or Metrics()
        self._health = health or Health(poll_interval=settings.boro.poll_interval)
        self._clock = clock
        self._saved: dict[str, Checkpoint] = {}
        self._streams: dict[int, Stream] = {}
        self._next_discovery = 0.0
        self._backoff = Backoff(settings.boro.retry.initial_backoff, settings.boro.retry.max_backoff)

    @property
    def streams(self) -> list[Stream]:
        """The streams polled so far."""
        return list(self._streams.values())

    async def restore(self, *, keep_cursors: bool = True) -> None:
        """Load every committed checkpoint; call once before polling (``keep_cursors=False``: start afresh)."""
        saved = await self._committer.restore()
        self._saved = saved if keep_cursors else {}
        log.info("restored %d of %d stream checkpoints", len(self._saved), len(saved))

    async def poll_once(self) -> float:
        """One cycle over every stream; returns how long to wait before the next one.

        Cycles start every ``poll_interval`` (a record waits at most one interval for its poll), or after a
        backoff when the cycle failed.
        """
        started = self._clock()
        try:
            await self._discover()
            await self._start_streams([s for s in self._streams.values() if not s.polling])
            await self._poll_tokens([s for s in self._streams.values() if s.polling])
        except BridgeError as error:
            if not error.retriable:
                raise
            if isinstance(error, BoroError):
                self._health.boro_failed(str(error))
            return self._failed(error)
        self._health.boro_succeeded()
        elapsed = self._clock() - started
        self._metrics.poll_seconds.observe(elapsed)
        self._backoff.reset()
        return max(0.0, self._settings.boro.poll_interval - elapsed)  # cycles start every interval

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; the cycle in flight always finishes and commits."""
        while not stop.is_set():
            delay = await self.poll_once()
            self._health.progress()
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue

    async def _discover(self) -> None:
        projects = self._settings.boro.projects
        if projects != "all":
            self._ensure_streams(projects)
            return
        if self._clock() < self._next_discovery:
            return
        self._ensure_streams(await self._client.project_ids())
        self._next_discovery = self._clock() + self._settings.boro.discovery_interval

    def _ensure_streams(self, project_ids: Iterable[int]) -> None:
        for project_id in project_ids:
            if project_id not in self._streams:
                saved = self._saved.get(stream_id(self._server, project_id, self._settings.boro))
                stream = open_stream(self._server, project_id, self._settings.boro, saved)
                self._streams[project_id] = stream
                log.info("stream %s opened at token %s", stream.id, stream.token)

    async def _poll_tokens(self, streams: list[Stream]) -> None:
        """Drain every stream; each round is prepared while the one before it is delivered, then delivered."""
        delivering: asyncio.Task[None] | None = None
        try:
            async with aclosing(self._client.drain([stream.query for stream in streams])) as rounds:
                async for round_ in rounds:
                    prepared = self._prepare_round(round_)
                    if delivering is not None:
                        previous, delivering = delivering, None
                        await _delivered(previous, prepared)
                    for stream, page in prepared.stuck:
                        self._begin_catch_up(stream, page)
                    if prepared.failures and len(prepared.failures) == len(round_):
                        raise prepared.failures[0]  # Boro failed every stream: back off
                    delivering = asyncio.create_task(self._commit(prepared.batch, prepared.touched))
            if delivering is not None:
                last, delivering = delivering, None
                await last
        finally:
            if delivering is not None:  # this cycle failed while a round was being delivered: let that end first
                await asyncio.wait([delivering])
                if not delivering.cancelled():
                    delivering.exception()  # it committed or rolled itself back; the failure above is the news

    def _prepare_round(self, round_: Round) -> _PreparedRound:
        """Feed every page to its stream's memory and build the batch; nothing is delivered or committed here."""
        prepared = _PreparedRound()
        for query, result in round_:
            stream = self._streams[query.project_id]
            if isinstance(result, BoroError):
                prepared.failures.append(self._count_failure(stream, result))
                continue
            if result.full and result.update_token == query.update_token:
                prepared.stuck.append((stream, result))
                continue
            self._add_page(prepared.batch, stream, result)
            prepared.batch.checkpoints.append(stream.checkpoint(_forward(query.update_token, result.update_token)))
            prepared.touched.append(stream)
        return prepared

    def _add_page(self, batch: Batch, stream: Stream, page: AlarmPage) -> None:
        self._metrics.polls.labels("ok").inc()
        self._metrics.records.inc(page.size)
        batch.events += self._events(stream, page.records)
        batch.dead_letters += [DeadLetter(stream.id, rejected) for rejected in page.rejected]

    def _events(self, stream: Stream, records: list[DecodedRecord]) -> list[CloudEvent]:
        build = self._factory.build
        return [build(transition) for transition in stream.memory.feed(records)]

    async def _commit(self, batch: Batch, touched: list[Stream]) -> None:
        if not batch:
            return
        started = self._clock()
        try:
            await self._committer.deliver(batch)
        except BridgeError:
            for stream in touched:
                stream.rollback()
            raise
        self._health.progress()
        self._metrics.publish_seconds.observe(self._clock() - started)
        self._metrics.dead_letters.inc(len(batch.dead_letters))
        self._count_published(batch.events)
        by_id = {checkpoint.stream: checkpoint for checkpoint in batch.checkpoints}
        for stream in touched:
            stream.advance(by_id[stream.id])
            self._metrics.cursor_commit_time.labels(stream.id).set(self._clock())
        self._metrics.active_alarms.set(sum(len(s.memory.active) for s in self._streams.values()))

    def _count_published(self, events: list[CloudEvent]) -> None:
        """Count delivered transitions, once per label set rather than once per event."""
        kinds = Counter(
            (event.attributes["id"].rpartition("-")[2], event.attributes["severity"], event.attributes["triggergroup"])
            for event in events
        )
        for (transition, level, group), count in kinds.items():
            self._metrics.transitions.labels(transition, level, group).inc(count)

    async def _start_streams(self, streams: list[Stream]) -> None:
        """First start, backfill or catch-up of each stream that needs it; one stream's failure spares the rest."""
        failures: list[BoroError] = []
        for stream in streams:
            try:
                await self._start_stream(stream)
            except BoroError as error:
                failures.append(self._count_failure(stream, error))
        if failures and len(failures) == len(self._streams):
            raise failures[0]

    async def _start_stream(self, stream: Stream) -> None:
        if stream.catch_up_from is not None:
            await self._plan_backfill(stream, stream.catch_up_from)
        elif stream.token is None:
            await self._first_start(stream, self._settings.first_start)
        if stream.backfill_from is not None:
            await self._backfill(stream, stream.backfill_from)

    async def _first_start(self, stream: Stream, first_start: FirstStartSettings) -> None:
        if first_start.mode == "now":
            await self._snapshot(stream, await self._current_token(stream))
            return
        await self._plan_backfill(stream, int(first_start.since.timestamp()) if first_start.since else 1)

    async def _current_token(self, stream: Stream) -> int | float:
        [probe] = await self._client.task_alarms([replace(stream.query, limit=1, update_token=None)])
        if isinstance(probe, BoroError):
            raise probe
        return probe.update_token

    async def _plan_backfill(self, stream: Stream, since: int) -> None:
        """Commit the token to continue with afterwards, then read from ``since`` by period."""
        token = await self._current_token(stream)
        await self._commit(Batch(checkpoints=[stream.checkpoint(token, backfill_from=since)]), [stream])
        log.info("stream %s: reading by period from %s, then token %s", stream.id, since, token)

    async def _snapshot(self, stream: Stream, token: int | float) -> None:
        """Raise every currently active state, then start from ``token``, in one commit."""
        batch = Batch()
        query = replace(stream.query, active_states_only=True, update_token=None)
        async for page in self._client.pages(query):
            self._add_page(batch, stream, page)
        batch.checkpoints.append(stream.checkpoint(token))
        await self._commit(batch, [stream])
        log.info("stream %s: started now at token %s with %d active alarms", stream.id, token, len(batch.events))

    async def _backfill(self, stream: Stream, start: int) -> None:
        token = stream.token
        steps = backfill(self._client, replace(stream.query, update_token=None), start, int(self._clock()))
        async for step in steps:
            await self._deliver_backfill_step(stream, token, step)

    async def _deliver_backfill_step(self, stream: Stream, token: int | float | None, step: BackfillStep) -> None:
        batch = Batch()
        self._add_page(batch, stream, step.page)
        batch.checkpoints.append(stream.checkpoint(token, backfill_from=step.resume_from))
        await self._commit(batch, [stream])

    def _begin_catch_up(self, stream: Stream, page: AlarmPage) -> None:
        """A full page whose token did not move: read by period from the page's oldest trigger time instead.

        Records behind the token changed no earlier than those on the page, and a record changes no earlier
        than it was triggered, so nothing behind the token is older than that time.
        """
        oldest = min((item.record.trigger_time for item in page.records), default=int(self._clock()) - 3600)
        log.warning("stream %s: a full page did not advance token %s; reading from %d", stream.id, stream.token, oldest)
        self._metrics.polls.labels("stuck_token").inc()
        stream.catch_up_from = oldest

    def _count_failure(self, stream: Stream, error: BoroError) -> BoroError:
        self._metrics.polls.labels("error").inc()
        self._metrics.errors.labels(error.kind).inc()
        log.warning("stream %s: poll failed, cursor stays at %s: %s", stream.id, stream.token, error)
        return error

    def _failed(self, error: BridgeError) -> float:
        retry_after = getattr(error, "retry_after", None)
        delay = self._backoff.next_delay(retry_after)
        log.warning("poll cycle failed (%s); next attempt in %.1f s", error, delay)
        return max(delay, 0.0)


@dataclass
class _PreparedRound:
    """One drain round, fed and batched, waiting for the round before it to be committed."""

    batch: Batch = field(default_factory=Batch)
    touched: list[Stream] = field(default_factory=list)
    stuck: list[tuple[Stream, AlarmPage]] = field(default_factory=list)  # full pages whose token did not move
    failures: list[BoroError] = field(default_factory=list)


async def _delivered(delivery: asyncio.Task[None], prepared: _PreparedRound) -> None:
    """Wait for the round before ``prepared``; when it failed, ``prepared`` is given up too."""
    try:
        await delivery
    except BaseException:
        for stream in prepared.touched:
            stream.rollback()
        raise


def _forward(current: int | float | None, new: int | float) -> int | float:
    """Cursors never move backwards."""
    if current is not None and new < current:
        log.warning("Boro returned token %s below the cursor %s; keeping the cursor", new, current)
        return current
    return new
