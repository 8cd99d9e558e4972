"""``borobridge replay``: re-emit a past period from Boro into Kafka, with the ids of the first time.

A replay reads the period in ``updated_at`` windows, each project through a stream of its own that is never
committed (:mod:`borobridge.streams`: the live reads' period read, paged windows used once whole), with a fresh
transition memory, so each record yields what
it yields on a first sight (an active state ``raised``; a cleared one ``raised`` then ``cleared``; an event
``event``) with the same deterministic ``source`` and ``id``: consumers recognise what they already have. It
uses its own transactional id and touches neither the cursors nor the active-alarm table of the live bridge.

The projects are read side by side, one batched request per round, so one Boro time tells how far the whole
replay got: every change before it has been sent for every project, and a replay started again from there
finishes the job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self

from borobridge import reading
from borobridge.boro.client import BoroClient
from borobridge.boro.http import BoroHttpClient
from borobridge.boro.queries import AlarmQuery
from borobridge.errors import ConfigError
from borobridge.events import EventFactory
from borobridge.kafka.sink import KafkaSink
from borobridge.reading import Position, Window
from borobridge.replay_progress import ReplayProgress
from borobridge.settings import Settings
from borobridge.sinks import Batch
from borobridge.streams import Stream
from borobridge.transitions import AlarmTransition, TransitionMemory

SIMULATE_URL: Final = "http://127.0.0.1:8000/ctrl_api/v1/json"


@dataclass(frozen=True, kw_only=True)
class ReplayRequest:
    """What to replay: Boro times ``[since, until]`` (until: now), of these projects (None: the configured ones)."""

    since: int
    until: int | None = None
    projects: Sequence[int] | None = None
    dry_run: bool = False


class _Sink(Protocol):
    async def deliver(self, batch: Batch) -> None: ...


class _DryRun:
    """The sink of ``--dry-run``: accepts every batch and sends nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def deliver(self, batch: Batch) -> None:
        return None


async def replay(
    settings: Settings,
    request: ReplayRequest,
    *,
    server_name: str,
    progress: Callable[[ReplayProgress], None] = lambda _: None,
) -> int:
    """Replay the requested period into Kafka (or only count it); returns the number of events sent."""
    _check(settings, request)
    factory = EventFactory(server_name)
    sent = 0
    async with BoroHttpClient(settings.boro) as http, _sink(settings, request) as sink:
        client = BoroClient(http, settings.boro)
        projects = await _projects(client, settings, request)
        reads = [_stream(settings, project, request) for project in projects]
        async for transitions in _rounds(client, reads, settings.boro.reply_order):
            events = [factory.build(transition) for transition in transitions]
            await sink.deliver(Batch(events=events))
            sent += len(events)
            progress(_progress(reads, request, sent))
    return sent


def _check(settings: Settings, request: ReplayRequest) -> None:
    problems = []
    if not settings.boro.url:
        problems.append(
            "boro.url: replay reads a Boro server and none is configured; set boro.url "
            f"(borobridge simulate serves {SIMULATE_URL})"
        )
    if settings.kafka is None and not request.dry_run:
        problems.append("kafka: replay writes to Kafka; configure kafka.bootstrap_servers, or give --dry-run")
    if problems:
        raise ConfigError(problems)


def _sink(settings: Settings, request: ReplayRequest) -> AbstractAsyncContextManager[_Sink]:
    if request.dry_run or settings.kafka is None:
        return _DryRun()
    return KafkaSink(settings.kafka, f"{settings.name}-replay", keeps_state=False)


async def _projects(client: BoroClient, settings: Settings, request: ReplayRequest) -> list[int]:
    if request.projects:
        return list(dict.fromkeys(request.projects))
    return settings.boro.projects if settings.boro.projects != "all" else await client.project_ids()


def _stream(settings: Settings, project_id: int, request: ReplayRequest) -> Stream:
    boro = settings.boro
    query = AlarmQuery(project_id=project_id, task_ids=boro.task_ids, filter=boro.filter, limit=boro.page_size)
    start = Position(windows=(Window(max(request.since, 1), request.until),))
    return Stream(f"replay/{project_id}", query, TransitionMemory(), start)


async def _rounds(
    client: BoroClient, reads: list[Stream], order: reading.Order
) -> AsyncIterator[list[AlarmTransition]]:
    """One request per round for every unfinished project (``"*"`` and, once tasks are seen, the tasks by id); the
    transitions each round yields, in order. Each answer is fed as the live reads feed it, and never committed."""
    while unfinished := [read for read in reads if read.position.windows]:
        asked = [read.queries(read.position) for read in unfinished]
        results = iter(await client.task_alarms([query for queries in asked for query in queries]))
        transitions: list[AlarmTransition] = []
        for read, queries in zip(unfinished, asked, strict=True):
            pages = reading.checked_pages(read.position, [next(results) for _ in queries])
            fed = read.feed(read.position, queries, pages, order)
            read.memory.commit()
            read.position = fed.position
            transitions += fed.transitions
        yield transitions


def _progress(reads: list[Stream], request: ReplayRequest, sent: int) -> ReplayProgress:
    """How far the replay got: the least floor of the unfinished reads (every change before it is sent)."""
    unfinished = [read.position for read in reads if read.position.windows]
    if unfinished:
        reached = min(max(position.floor or request.since, request.since) for position in unfinished)
    else:
        reached = request.until or max((read.position.clock or request.since for read in reads), default=request.since)
    return ReplayProgress(reached, sent, len(reads) - len(unfinished), len(reads))
