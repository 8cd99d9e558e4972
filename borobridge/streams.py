"""A stream: one (Boro server, project, task selector, filter), its read position and its transition memory."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field, replace

import msgspec

from borobridge import reading
from borobridge.boro.queries import AlarmPage, AlarmQuery, RejectedRecord
from borobridge.checkpoint import Checkpoint
from borobridge.reading import Order, Position
from borobridge.settings import BoroSettings, FilterSettings, FirstStartSettings
from borobridge.transitions import UNKNOWN_TIME, AlarmTransition, Finished, TransitionMemory


@dataclass(eq=False)
class Stream:
    """The poll state of one stream.

    ``position`` is where reading has got to (fed, maybe not yet delivered), ``committed`` where the last
    delivered checkpoint left it. Each checkpoint built is committed (:meth:`advance`) or given up
    (:meth:`rollback`) in the order it was built; a round may be fed while the one before it is being delivered.
    """

    id: str
    base: AlarmQuery
    memory: TransitionMemory
    committed: Position
    tasks: set[int] = field(default_factory=set)
    sweep: Position | None = None
    position: Position = field(init=False)
    _marks: deque[tuple[int, Position, frozenset[int]]] = field(default_factory=deque, init=False, repr=False)
    _committed_tasks: frozenset[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.position = self.committed
        self._committed_tasks = frozenset(self.tasks)

    @property
    def token(self) -> int | float | None:
        """The committed token, or None before the first start has one."""
        return self.committed.token

    @property
    def started(self) -> bool:
        """False until the stream has a position to read from (a first start sets it)."""
        return self.position.token is not None or self.position.busy

    def queries(self, position: Position) -> list[AlarmQuery]:
        """The calls that read ``position`` on: the configured selector, and the tasks seen when it is ``"*"``.

        ``"*"`` covers only the tasks of running probes; a task seen once is also asked for by id, so the clear
        of a state whose probe stopped still arrives.
        """
        query = reading.next_query(position, self.base)
        if self.base.task_ids != "*" or not self.tasks or reading.paged(position):
            return [query]  # two listings paged side by side would interleave out of order
        return [query, replace(query, task_ids=sorted(self.tasks))]

    def feed(self, position: Position, queries: list[AlarmQuery], pages: list[AlarmPage], order: Order) -> FedPage:
        """Feed the answer to :meth:`queries` read at ``position``: its transitions and the position after it."""
        answer = reading.answer_of(pages, order)
        used = reading.usable(position, answer)
        records = answer.records if used else []
        clock = max((c for c in (answer.clock, position.clock) if c is not None), default=None)
        transitions = self.memory.feed(records, reading.read_bound(queries[0], clock))
        self.tasks.update(item.record.task_id for item in records)
        rejected = [item for page in pages for item in page.rejected] if used else []
        after = reading.after_reply(position, answer, fresh=bool(transitions))
        return FedPage(transitions, rejected, after)

    def checkpoint(self) -> Checkpoint:
        """The record that commits this stream where it stands now, memory as fed so far."""
        self._marks.append((self.memory.mark(), self.position, frozenset(self.tasks)))
        return Checkpoint(
            stream=self.id,
            update_token=self.position.token,
            active=self.memory.active,
            position=self.position,
            finished=self.memory.finished,
            tasks=sorted(self.tasks),
        )

    def advance(self, horizon_seconds: int) -> None:
        """Adopt the oldest checkpoint not yet committed, once it is, and forget what no read can reach again."""
        mark, self.committed, self._committed_tasks = self._marks.popleft()
        self.memory.commit(mark)
        horizon = _horizon(self.committed, horizon_seconds)
        if horizon is not None:
            self.memory.forget_before(horizon)

    def rollback(self) -> None:
        """Give up every checkpoint not committed yet, and what was fed for them."""
        self.memory.rollback()
        self._marks.clear()
        self.position = self.committed
        self.tasks = set(self._committed_tasks)
        self.sweep = None


@dataclass(frozen=True, slots=True)
class FedPage:
    """What one answer fed: the transitions it yielded, the records that cannot become events, the new position."""

    transitions: list[AlarmTransition]
    rejected: list[RejectedRecord]
    position: Position


def _horizon(position: Position, seconds: int) -> int | None:
    """Boro time before which no read goes any more: the sweep's reach behind the clock, and the gap's start."""
    if position.clock is None:
        return None
    lows = [position.clock - seconds]
    if position.floor is not None:
        lows.append(position.floor - seconds)
    lows += [window.low for window in position.windows]
    return min(lows) - reading.MAX_PASSES * 60


def stream_id(server: str, project_id: int, settings: BoroSettings) -> str:
    """``server/project``, plus a digest of the task selector and filter when they are not the defaults."""
    base = f"{server}/{project_id}"
    if settings.task_ids == "*" and settings.filter == FilterSettings():
        return base
    selection = msgspec.json.encode({"task_ids": settings.task_ids, "filter": settings.filter})
    return f"{base}/{hashlib.sha256(selection).hexdigest()[:12]}"


def open_stream(
    server: str, project_id: int, settings: BoroSettings, saved: Checkpoint | None, first_start: FirstStartSettings
) -> Stream:
    """A stream for one project, resumed from its checkpoint when there is one, else at its first start."""
    base = AlarmQuery(
        project_id=project_id, task_ids=settings.task_ids, filter=settings.filter, limit=settings.page_size
    )
    identity = stream_id(server, project_id, settings)
    if saved is None or not (saved.update_token is not None or saved.resumed_position().busy):
        since = int(first_start.since.timestamp()) if first_start.since else None
        return Stream(identity, base, TransitionMemory(), reading.first_position(first_start.mode, since))
    finished = [*saved.finished, Finished(UNKNOWN_TIME, saved.done)] if saved.done else saved.finished
    memory = TransitionMemory(saved.active, finished)
    return Stream(identity, base, memory, saved.resumed_position(), set(saved.tasks))
