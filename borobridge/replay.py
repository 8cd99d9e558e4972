"""``borobridge replay``: re-emit a past period from Boro into Kafka, with the ids of the first time.

A replay reads the period in ``updated_at`` windows (the reading strategy's period read, :mod:`borobridge.reading`)
with a fresh transition memory, so each record yields what
it yields on a first sight (an active state ``raised``; a cleared one ``raised`` then ``cleared``; an event
``event``) with the same deterministic ``source`` and ``id``: consumers recognise what they already have. It
uses its own transactional id and touches neither the cursors nor the active-alarm table of the live bridge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from borobridge import reading
from borobridge.boro.client import BoroClient
from borobridge.boro.queries import AlarmQuery
from borobridge.delivery import Batch
from borobridge.errors import BoroError, ConfigError
from borobridge.events import EventFactory
from borobridge.reading import Position, Window
from borobridge.settings import Settings
from borobridge.sinks.kafka import KafkaSink
from borobridge.transitions import AlarmTransition, TransitionMemory


@dataclass(frozen=True)
class ReplayProgress:
    """How far a replay got: the project, the Boro time reached, and events sent so far."""

    project_id: int
    reached: int
    events: int


async def replay(
    settings: Settings,
    since: int,
    until: int | None,
    *,
    server_name: str,
    progress: Callable[[ReplayProgress], None] = lambda _: None,
) -> int:
    """Replay ``[since, until]`` of every configured project into Kafka; returns the number of events sent."""
    if settings.kafka is None:
        raise ConfigError(["kafka: replay writes to Kafka; configure kafka.bootstrap_servers"])
    factory = EventFactory(server_name)
    sent = 0
    async with (
        httpx.AsyncClient() as http,
        KafkaSink(settings.kafka, f"{settings.name}-replay", keeps_state=False) as sink,
    ):
        client = BoroClient(http, settings.boro)
        projects = settings.boro.projects if settings.boro.projects != "all" else await client.project_ids()
        for project_id in projects:
            query = AlarmQuery(
                project_id=project_id,
                task_ids=settings.boro.task_ids,
                filter=settings.boro.filter,
                limit=settings.boro.page_size,
            )
            async for reached, transitions in _period(client, query, since, until, settings.boro.reply_order):
                events = [factory.build(transition) for transition in transitions]
                await sink.deliver(Batch(events=events))
                sent += len(events)
                progress(ReplayProgress(project_id, reached, sent))
    return sent


async def _period(
    client: BoroClient, base: AlarmQuery, since: int, until: int | None, order: reading.Order
) -> AsyncIterator[tuple[int, list[AlarmTransition]]]:
    """The transitions of one project's period, window by window: how far Boro's clock is read, and what it gave."""
    memory = TransitionMemory()
    position = Position(windows=(Window(max(since, 1), until),))
    while position.windows:
        query = reading.next_query(position, base)
        [result] = await client.task_alarms([query])
        if isinstance(result, BoroError):
            raise result
        answer = reading.answer_of([result], order)
        records = answer.records if reading.usable(position, answer) else []
        transitions = memory.feed(records)
        memory.commit()
        position = reading.after_reply(position, answer, fresh=bool(transitions))
        yield (position.windows[0].low if position.windows else until or position.clock or since), transitions
