"""A stream: one (Boro server, project, task selector, filter), its read position and its transition memory."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final

import msgspec

from borobridge import reading
from borobridge.boro.models import Token
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord, RejectedRecord
from borobridge.checkpoint import Checkpoint
from borobridge.gathered import Gathered
from borobridge.reading import Order, Position
from borobridge.settings import BoroSettings, FilterSettings, FirstStartSettings
from borobridge.transitions import UNKNOWN_TIME, AlarmTransition, Finished, TransitionMemory

_moved = msgspec.structs.replace

MAX_VOTES: Final = 1_000  # direction evidence kept per kind of listing: decisive, and small in a checkpoint


@dataclass(eq=False)
class Stream:
    """The poll state of one stream.

    ``position`` is where reading has got to (fed, maybe not yet delivered), ``committed`` where the last
    delivered checkpoint left it. ``backfill`` (and ``committed_backfill``) is the first start's history read, a
    lane beside the live one that feeds the same memory; None once done. It is bounded where the live lane's
    snapshot ends (:func:`reading.backfill_bounded`), and read only from then on. Each
    checkpoint built is committed (:meth:`advance`) or given up (:meth:`rollback`) in the order it was built; a
    round may be fed while the one before it is being delivered.
    """

    id: str
    base: AlarmQuery
    memory: TransitionMemory
    committed: Position
    tasks: set[int] = field(default_factory=set)
    sweep: Position | None = None
    committed_backfill: Position | None = None
    history_beside: bool = True  # a first start's history is read in a lane beside the live one (else first)
    position: Position = field(init=False)
    backfill: Position | None = field(init=False)
    _horizon: int = field(default=0, init=False, repr=False)  # Boro time before which the memory forgets
    _gathered: dict[str, Gathered] = field(default_factory=dict, init=False, repr=False)
    directions: dict[str, int] = field(default_factory=dict)  # the direction votes by kind of listing
    _marks: deque[_Mark] = field(default_factory=deque, init=False, repr=False)
    _committed_tasks: frozenset[int] = field(init=False, repr=False)
    _sweep_start: Position | None = field(default=None, init=False, repr=False)  # the sweep under way as it began
    _swept_by_id: frozenset[int] = field(default=frozenset(), init=False, repr=False)  # asked by id in the sweep
    _lag: _Lag | None = field(default=None, init=False, repr=False)  # the last token read, when it was complete
    _lagging: _Lag | None = field(default=None, init=False, repr=False)  # the lag the read under way asks by

    def __post_init__(self) -> None:
        self.position = self.committed
        self.backfill = self.committed_backfill
        self._committed_tasks = frozenset(self.tasks)

    @property
    def token(self) -> Token | None:
        """The committed token, or None before the first start has one."""
        return self.committed.token

    def queries(self, position: Position, lane: str = "poll") -> list[AlarmQuery]:
        """The calls that read ``position`` on: the configured selector, and the tasks seen when it is ``"*"``.

        ``"*"`` covers only the tasks of running probes; a task seen once is also asked for by id, so the clear
        of a state whose probe stopped still arrives. A token read right after a complete one asks by id only
        for the tasks ``"*"`` did not list then (:class:`_Lag`), from the token that read was asked with. A window
        read by task subsets asks for one subset only.
        """
        query = reading.next_query(position, self.base)
        if lane == "poll":
            self._lagging = None
        if position.subsets:
            return [query]
        tasks = self._tasks_for(position, lane)
        if self.base.task_ids != "*" or not tasks:
            return [query]
        lag = self._lag if lane == "poll" else None
        if lag is None or lag.then != position.token or position.busy:
            return [query, replace(query, task_ids=list(tasks))]
        self._lagging = lag
        unlisted = [task for task in tasks if task not in lag.listed]
        if not unlisted:
            return [query]
        earlier = reading.next_query(_moved(position, token=lag.token), self.base)
        return [query, replace(earlier, task_ids=unlisted)]

    def _tasks_for(self, position: Position, lane: str) -> tuple[int, ...]:
        """The tasks asked for by id; a paged read asks for the same ones on every page of every pass."""
        if not reading.paged(position):
            return tuple(sorted(self.tasks))
        gathered = self._gathered.setdefault(lane, Gathered())
        if position.page == 1 and position.passes == 0:
            gathered.clear()
        if gathered.tasks is None:  # the read's first page
            gathered.tasks = tuple(sorted(self.tasks))
        return gathered.tasks

    def feed(
        self, position: Position, queries: list[AlarmQuery], pages: list[AlarmPage], order: Order, lane: str = "poll"
    ) -> FedPage:
        """Feed the answer to :meth:`queries` read at ``position``: its transitions and the position after it.

        A paged read (the snapshot, one crowded second) is fed only once it is whole: its pages are gathered,
        pass after pass, and fed together in change order, since a record moving between two pages would
        otherwise come after later ones. ``lane`` keeps the sweep's pages apart from the stream's own.
        """
        kind = "token" if queries[0].update_token is not None else "period"
        hint = self.directions.get(kind, 0) or order
        named = queries[-1].task_ids if len(queries) > 1 else "*"
        by_id = named if isinstance(named, list) else []
        answer = reading.answer_of(pages, hint, by_id, self.memory.knows)
        if reading.pages_from(position, answer):  # its votes count once it is whole, its pages together
            return self._feed_paged(position, queries, answer, pages, _PagedRead(lane, hint, by_id, kind))
        self._count_votes(kind, answer.votes)
        used = reading.usable(position, answer)
        rejected = [item for page in pages for item in page.rejected] if used else []
        records = _recent(answer.records, self._horizon) if used else []
        transitions = self._remember(position, queries, answer, records, lane)
        after = reading.after_reply(position, answer, fresh=bool(transitions))
        if lane == "poll":
            after = self._follow(position, pages[0], after)
        return FedPage(transitions, rejected, after)

    def _count_votes(self, kind: str, votes: int) -> None:
        """Add evidence of the direction Boro lists ``kind`` of listing in (:func:`reading.direction`)."""
        self.directions[kind] = max(-MAX_VOTES, min(self.directions.get(kind, 0) + votes, MAX_VOTES))

    def _follow(self, position: Position, selector: AlarmPage, after: Position) -> Position:
        """Note a read of the stream's own lane for the next one (:class:`_Lag`); after a read that asked by id only
        for some tasks, the floor stays where the read before it left every task complete."""
        lag, self._lagging = self._lagging, None
        self._lag = _Lag.after(position, selector, after)
        if lag is None or after.busy:
            return after
        return _moved(after, floor=_latest(position.floor, lag.reached))

    def _feed_paged(
        self,
        position: Position,
        queries: list[AlarmQuery],
        answer: reading.Answer,
        pages: list[AlarmPage],
        read: _PagedRead,
    ) -> FedPage:
        if read.lane == "poll":
            self._lag = self._lagging = None
        gathered = self._gathered.setdefault(read.lane, Gathered())
        if position.page == 1 and position.passes == 0:  # the read's first page, paged or found to be paged
            gathered.clear()
            gathered.tasks = tuple(read.by_id)
        if reading.starts_pass(position):
            gathered.clock = reading.pass_clock(position, answer)
        last_page = not reading.more_pages(position, answer)
        if reading.verifying(position):
            changed = gathered.check(pages, last_page=last_page)
        else:
            boro_moved = last_page and not position.subsets and reading.moved_on(position, answer, gathered.clock)
            held = self.memory.active if boro_moved else []  # a subset's check cannot list other tasks' states
            changed = gathered.add(
                pages,
                position.passes,
                last_page=last_page,
                snapshot=position.snapshot,
                held=held,
                bounded=not position.snapshot and position.windows[0].high is not None,
                star=self.base.task_ids == "*" and not position.subsets,
            )
        after = reading.after_reply(position, answer, fresh=changed, tasks=gathered.task_counts)
        if reading.same_read(position, after):
            return FedPage([], [], after)
        if reading.narrowed(position, after):  # read again in smaller windows or by tasks: nothing of it is fed
            gathered.clear()
            return FedPage([], [], after)
        listings = gathered.whole(settled=not changed)
        # pages of one record tell nothing apart; the read's pages together do, and are counted once
        votes = sum(reading.direction(listing, self.memory.knows) for listing in listings)
        self._count_votes(read.kind, votes)
        records = reading.combined(listings, read.hint, read.by_id, votes)
        if not position.snapshot:  # the snapshot lists every active state, however old
            records = _recent(records, self._horizon)
        elif self.backfill is not None:  # the history raises them in Boro's order: the snapshot gives the token
            records = []
            self.backfill, after = reading.backfill_bounded(self.backfill, after, beside=self.history_beside)
        transitions = self._remember(position, queries, answer, records, read.lane)
        rejected = list(gathered.rejected.values())
        gathered.clear()
        return FedPage(transitions, rejected, after)

    def _remember(
        self,
        position: Position,
        queries: list[AlarmQuery],
        answer: reading.Answer,
        records: list[DecodedRecord],
        lane: str,
    ) -> list[AlarmTransition]:
        clock = max((c for c in (answer.clock, position.clock) if c is not None), default=None)
        learned = {item.record.task_id for item in records} - self.tasks
        self.tasks |= learned
        if lane != "sweep":  # the stream's own reads ask for these by id from now on: a sweep's find is theirs
            self._swept_by_id |= learned
        return self.memory.feed(records, reading.read_bound(queries[0], clock))

    def start_sweep(self, window: int, boro_clock: int | None) -> Position | None:
        """Begin a reconciliation sweep (:func:`reading.sweep_position`); ``boro_clock`` is the latest Boro time
        any stream of this server proved."""
        self.sweep = reading.sweep_position(self.position, window, boro_clock)
        if self.sweep is not None:
            self._sweep_start, self._swept_by_id = self.sweep, frozenset(self.tasks)
        return self.sweep

    def missed(self, sweep: Position, transitions: list[AlarmTransition], *, polled: bool) -> list[AlarmTransition]:
        """The transitions the sweep found, read at ``sweep``, that the token path had missed (:func:`reading.missed`).

        While the stream's own reads are behind (a period read under way), or did not answer in the round that read
        ``sweep`` (not ``polled``), what the sweep finds past the floor may be theirs still: it is delivered, but not
        counted as missed. A complete read of the stream's own in the same round answered up to the same moment: a
        change the sweep's ``"*"`` found and it did not lies behind its token.
        """
        start = self._sweep_start
        if start is None or ((self.position.busy or not polled) and reading.past_the_floor(sweep, start)):
            return []
        return [t for t in transitions if reading.missed(sweep, start, t.record.task_id, self._swept_by_id)]

    def checkpoint(self) -> Checkpoint:
        """The record that commits this stream where it stands now, memory as fed so far."""
        position = reading.resumable(self.position)
        backfill = reading.resumable(self.backfill) if self.backfill is not None else None
        self._marks.append(_Mark(self.memory.mark(), position, frozenset(self.tasks), backfill))
        return Checkpoint(
            stream=self.id,
            update_token=position.token,
            active=self.memory.active,
            position=position,
            finished=self.memory.finished,
            tasks=sorted(self.tasks),
            dead_letters=self.memory.dead_letters,
            backfill=backfill,
            directions=dict(self.directions),
        )

    def advance(self, horizon_seconds: int) -> None:
        """Adopt the oldest checkpoint not yet committed, once it is, and forget what no read can reach again."""
        mark = self._marks.popleft()
        self.committed, self._committed_tasks, self.committed_backfill = mark.position, mark.tasks, mark.backfill
        self.memory.commit(mark.memory)
        horizon = _horizon(self.committed, horizon_seconds, self.committed_backfill)
        if horizon is not None:
            self.memory.forget_before(horizon)
            self._horizon = horizon

    def rollback(self) -> None:
        """Give up every checkpoint not committed yet, and what was fed for them."""
        self.memory.rollback()
        self._marks.clear()
        self.position = self.committed
        self.backfill = self.committed_backfill
        self.tasks = set(self._committed_tasks)
        self.sweep = None
        self._gathered.clear()
        self._lag = self._lagging = None


@dataclass(frozen=True, slots=True)
class _Mark:
    """A checkpoint built and not yet committed: the memory's mark, and the lanes and tasks it records."""

    memory: int
    position: Position
    tasks: frozenset[int]
    backfill: Position | None


@dataclass(frozen=True, slots=True)
class _Lag:
    """A complete token read of the stream's own lane: the token it was asked with, the token it gave, the tasks
    its ``"*"`` call listed, and the floor its answer reached.

    A task ``"*"`` listed ran then, and that answer held its every change up to the reply. The next read asks by
    id only for the other tasks, from the token this read was asked with: a task whose probe stopped since is left
    out of the next ``"*"`` answer as well, and the read after that asks for it by id from before the stop, so its
    changes arrive one read late, never lost. Such a read leaves every task complete only up to this read's reply,
    so the floor it sets is this read's, not its own. Held in memory only: after a crash or a rollback every task
    seen is asked for by id again.
    """

    token: Token
    then: Token
    listed: frozenset[int]
    reached: int | None

    @classmethod
    def after(cls, position: Position, selector: AlarmPage, after: Position) -> _Lag | None:
        """The lag after a read at ``position`` whose ``"*"`` page is ``selector``; None unless it was a complete
        token read."""
        if position.token is None or position.busy or after.busy or after.token is None:
            return None
        listed = frozenset(item.record.task_id for item in selector.records)
        return cls(position.token, after.token, listed, after.floor)


@dataclass(frozen=True, slots=True)
class _PagedRead:
    """How a paged read's pages are combined once whole: its lane, the direction hint, the tasks asked by id and the
    kind of listing."""

    lane: str
    hint: Order | int
    by_id: list[int]
    kind: str


@dataclass(frozen=True, slots=True)
class FedPage:
    """What one answer fed: the transitions it yielded, the records that cannot become events, the new position."""

    transitions: list[AlarmTransition]
    rejected: list[RejectedRecord]
    position: Position


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None or (b is not None and b > a) else a


def _recent(records: list[DecodedRecord], horizon: int) -> list[DecodedRecord]:
    """Drop events and active states that changed before ``horizon``: Boro repeating them cannot be news, and the
    memory may have forgotten them. (A cleared state's change time is not in the record: it always goes on.)"""
    if not horizon:
        return records
    return [item for item in records if item.record.trigger_time >= horizon or item.record.active is False]


def _horizon(position: Position, seconds: int, backfill: Position | None = None) -> int | None:
    """Boro time before which no read goes any more: the sweep's reach behind the clock, the gap's start, and the
    history read's."""
    if position.clock is None:
        return None
    lows = [position.clock - seconds]
    if position.floor is not None:
        lows.append(position.floor - seconds)
    lows += [window.low for window in position.windows]
    lows += [window.low for window in backfill.windows] if backfill is not None else []
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
        backfill = reading.backfill_position(first_start.mode, since)
        beside = first_start.history == "beside"
        return Stream(
            identity,
            base,
            TransitionMemory(),
            reading.first_position(),
            committed_backfill=backfill,
            history_beside=beside,
        )
    finished = [*saved.finished, Finished(UNKNOWN_TIME, saved.done)] if saved.done else saved.finished
    memory = TransitionMemory(saved.active, finished, saved.dead_letters)
    return Stream(
        identity,
        base,
        memory,
        saved.resumed_position(),
        set(saved.tasks),
        committed_backfill=saved.backfill,
        history_beside=first_start.history == "beside",
        directions=dict(saved.directions),
    )
