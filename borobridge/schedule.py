"""Which reads a round makes: the live lanes, the history lanes of first starts, the sweeps and the held streams.

Every stream is due once per cycle, and again at once while its own read has more to do than one reply. A first
start's history lane gets a few reads per round, streams taking turns, so live reads never wait behind it; a new
stream's live lane waits for its history through its first cycle (its head start, see ``docs/reading.md``). Each
stream's reconciliation sweep starts on a clock of its own. A stream held back because a sink cannot take its
events is not read until its backoff expires. What a read asks Boro is the reading strategy's
(:mod:`borobridge.reading`, :meth:`Stream.queries`); this module only says which reads are due.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from borobridge.boro.queries import AlarmQuery
from borobridge.held_streams import HeldStreams
from borobridge.reading import Position
from borobridge.settings import ReconcileSettings
from borobridge.streams import Stream

BACKFILL_READS_PER_ROUND = 4  # history reads in one round, streams taking turns: live reads never wait behind them
HEAD_START_CYCLES = 10  # cycles at most that a stream's live lane waits for its history while history reads fail
NOT_IN_THIS_CYCLE = math.inf  # the due time of a stream whose read failed, or that is held back


@dataclass(frozen=True, slots=True)
class Read:
    """One read step of one stream: its own position moved on, its first start's history read, or its
    reconciliation sweep."""

    stream: Stream
    purpose: Literal["poll", "backfill", "sweep"]
    position: Position
    queries: list[AlarmQuery]


class ReadPlan:
    """The reads due in each round of a cycle, on ``clock`` (this process's clock, not Boro's)."""

    def __init__(
        self,
        *,
        poll_interval: float,
        reconcile: ReconcileSettings,
        held: HeldStreams,
        clock: Callable[[], float],
    ) -> None:
        self._poll_interval = poll_interval
        self._reconcile = reconcile
        self._held = held
        self._clock = clock
        self._streams: dict[str, Stream] = {}
        self._due: dict[str, float] = {}  # when each stream is read next in this cycle
        self._next_sweep: dict[str, float] = {}
        self._history_turn = 0  # which stream reading history reads first in the next round
        self._resting: set[str] = set()  # history reads that failed in this cycle
        self._head_start: dict[str, int] = {}  # streams whose live lane waits for their history: cycles left

    def add(self, stream: Stream) -> None:
        """Schedule a stream just opened; one with a history lane gets its head start."""
        self._streams[stream.id] = stream
        if _has_history_lane(stream):
            self._head_start[stream.id] = HEAD_START_CYCLES

    def begin_cycle(self, now: float) -> None:
        """Every stream is due from ``now``, except the held ones; failed history reads are tried again."""
        self._due = dict.fromkeys(self._streams, now)
        self._resting.clear()
        for held in self._held.waiting():
            self._due[held] = NOT_IN_THIS_CYCLE

    def due(self) -> list[Read]:
        """The next read of every stream that is due, and of every sweep under way, after a few history reads
        (their records come first, so a round that reads both gives a task's history before its live changes)."""
        now = self._clock()
        reads = self._history_reads()
        for stream in self._streams.values():
            due = self._due.get(stream.id, 0.0)
            if now >= due and not self._waits_for_history(stream):
                reads.append(Read(stream, "poll", stream.position, stream.queries(stream.position, "poll")))
            elif due == NOT_IN_THIS_CYCLE:
                continue  # failed in this cycle: the next cycle tries again
            sweep = stream.sweep or self._start_sweep(stream, now)
            if sweep is not None:
                reads.append(Read(stream, "sweep", sweep, stream.queries(sweep, "sweep")))
        return reads

    def polled(self, stream: Stream) -> None:
        """The stream's own read was fed: read on at once while it has more to do, else after the poll interval."""
        pause = 0.0 if stream.position.busy else self._poll_interval
        self._due[stream.id] = self._clock() + pause

    def failed(self, read: Read) -> None:
        """A read failed: its lane rests until the next cycle, the stream's other lanes go on."""
        if read.purpose == "backfill":
            self._resting.add(read.stream.id)
        else:
            self._due[read.stream.id] = NOT_IN_THIS_CYCLE

    def hold(self, stream: Stream) -> float:
        """Hold ``stream`` back on its own backoff; returns the delay."""
        delay = self._held.hold(stream.id)
        self._due[stream.id] = NOT_IN_THIS_CYCLE
        return delay

    def release(self, stream_id: str) -> bool:
        """The stream's events were delivered: True when it was held back until now."""
        return self._held.release(stream_id)

    def read_again(self) -> None:
        """Every stream not held back nor failed in this cycle is due at once (its round was given up)."""
        now = self._clock()
        for stream_id in self._streams:
            if self._due.get(stream_id) != NOT_IN_THIS_CYCLE:
                self._due[stream_id] = now

    def end_cycle(self, *, failed: bool) -> None:
        """The head starts given are over, except where a read of the stream failed (then the next cycle tries
        again, :data:`HEAD_START_CYCLES` at most)."""
        for stream_id, left in list(self._head_start.items()):
            stream = self._streams[stream_id]
            read_failed = failed or stream_id in self._resting or self._due.get(stream_id) == NOT_IN_THIS_CYCLE
            if stream.backfill is None or not read_failed or left <= 1:
                del self._head_start[stream_id]
            else:
                self._head_start[stream_id] = left - 1

    def until_due(self, started: float) -> float:
        """Cycles start every poll interval (a record waits at most one interval), or at once while a sweep or a
        period read or a history read has more to do than one cycle's requests."""
        held = set(self._held.waiting())
        if any((s.sweep or s.backfill or s.position.busy) and s.id not in held for s in self._streams.values()):
            return 0.0
        return max(0.0, started + self._poll_interval - self._clock())

    def _waits_for_history(self, stream: Stream) -> bool:
        """Whether the stream's live lane, its snapshot read, waits for its history in this cycle (its head start).

        A new stream's history, bounded where its live lane starts, is given the stream's first cycle to be read
        whole before the live lane reads on; a short one is then delivered before every later change, so each
        task's order holds across the two lanes. A longer one goes on beside the live lane from the next cycle.
        """
        return stream.id in self._head_start and stream.backfill is not None and not stream.position.snapshot

    def _history_reads(self) -> list[Read]:
        """The next history read of at most :data:`BACKFILL_READS_PER_ROUND` streams, taking turns; a history waits
        for its bound until its live lane's snapshot is read, and a stream held back waits for its backoff."""
        resting = self._resting | set(self._held.waiting())
        waiting = [
            s
            for s in self._streams.values()
            if s.backfill is not None and not s.position.snapshot and s.id not in resting
        ]
        if not waiting:
            return []
        start = self._history_turn % len(waiting)
        chosen = (waiting[start:] + waiting[:start])[:BACKFILL_READS_PER_ROUND]
        self._history_turn = start + len(chosen)
        return [Read(s, "backfill", s.backfill, s.queries(s.backfill, "backfill")) for s in chosen if s.backfill]

    def _start_sweep(self, stream: Stream, now: float) -> Position | None:
        if stream.position.busy or stream.backfill is not None:  # a sweep meeting unread history is no news
            return None
        if now < self._next_sweep.setdefault(stream.id, now + self._reconcile.interval):
            return None
        self._next_sweep[stream.id] = now + self._reconcile.interval
        clocks = [s.position.clock for s in self._streams.values() if s.position.clock is not None]
        return stream.start_sweep(self._reconcile.window, max(clocks, default=None))


def _has_history_lane(stream: Stream) -> bool:
    """Whether the stream's history may be read beside its live lane. With ``first_start.history: first`` a new
    stream's history becomes its live lane's once its snapshot is read, so no head start is needed; a stream resumed
    past its snapshot with a history still to read reads it beside, whatever the setting."""
    return stream.backfill is not None and (stream.history_beside or not stream.position.snapshot)
