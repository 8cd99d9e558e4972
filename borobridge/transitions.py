"""Records to transitions: ``raised``, ``cleared`` and ``event``, each emitted once (pure, no I/O).

A stream's :class:`TransitionMemory` knows which alarms the bridge has raised and which record ids are done
(event emitted, or state cleared). Feeding it a page yields the new transitions; changes are journalled so that a
page whose delivery failed can be rolled back and replayed identically.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from enum import StrEnum

import msgspec

from borobridge.boro.models import AlarmRecord
from borobridge.boro.queries import DecodedRecord

DEFAULT_MEMORY = 5_000


class Transition(StrEnum):
    """What happened to an alarm."""

    RAISED = "raised"
    CLEARED = "cleared"
    EVENT = "event"


class AlarmTransition(msgspec.Struct, frozen=True, gc=False):
    """One transition of one record, with the record's exact bytes (a Struct: one is built per transition)."""

    kind: Transition
    record: AlarmRecord
    raw: bytes
    synthetic: bool = False


class TransitionMemory:
    """The raised alarms and the recently finished record ids of one stream."""

    def __init__(self, active: Iterable[int] = (), done: Iterable[int] = (), capacity: int = DEFAULT_MEMORY) -> None:
        self._active: dict[int, None] = dict.fromkeys(active)
        self._done: OrderedDict[int, None] = OrderedDict.fromkeys(done)
        self._capacity = capacity
        self._journal: list[tuple[str, int]] = []
        self._committed = 0  # journal entries committed so far, ever: marks count from the first feed

    @property
    def active(self) -> list[int]:
        """Ids of the alarms currently raised, in the order they were raised."""
        return list(self._active)

    @property
    def done(self) -> list[int]:
        """Recently finished record ids, oldest first."""
        return list(self._done)

    def feed(self, records: Iterable[DecodedRecord]) -> list[AlarmTransition]:
        """The transitions these records add, in their order; repeats yield nothing."""
        transitions: list[AlarmTransition] = []
        for item in records:
            transitions += self._transitions_of(item)
        return transitions

    def mark(self) -> int:
        """A point in what was fed so far, to commit up to later (a page fed after it stays uncommitted)."""
        return self._committed + len(self._journal)

    def commit(self, through: int | None = None) -> None:
        """Keep what was fed up to ``through`` (a :meth:`mark`; default: everything fed), and forget the oldest
        finished ids past the capacity."""
        kept = len(self._journal) if through is None else through - self._committed
        del self._journal[:kept]
        self._committed += kept
        while len(self._done) > self._capacity:
            self._done.popitem(last=False)

    def rollback(self) -> None:
        """Undo everything fed since the last commit."""
        for change, record_id in reversed(self._journal):
            if change == "raise":
                del self._active[record_id]
            elif change == "finish":
                self._done.pop(record_id, None)  # the capacity may have forgotten it already
            else:
                self._active[record_id] = None
        self._journal.clear()

    def _transitions_of(self, item: DecodedRecord) -> list[AlarmTransition]:
        record = item.record
        if record.id in self._done:
            return []
        if record.type == "event":
            self._finish(record.id)
            return [AlarmTransition(Transition.EVENT, record, item.raw)]
        if record.active:
            if record.id in self._active:
                return []
            self._raise(record.id)
            return [AlarmTransition(Transition.RAISED, record, item.raw)]
        return self._clear(item)

    def _clear(self, item: DecodedRecord) -> list[AlarmTransition]:
        record_id = item.record.id
        cleared = AlarmTransition(Transition.CLEARED, item.record, item.raw)
        self._finish(record_id)
        if record_id in self._active:
            del self._active[record_id]
            self._journal.append(("unraise", record_id))
            return [cleared]
        raised = AlarmTransition(Transition.RAISED, item.record, item.raw, synthetic=True)
        return [raised, cleared]

    def _raise(self, record_id: int) -> None:
        self._active[record_id] = None
        self._journal.append(("raise", record_id))

    def _finish(self, record_id: int) -> None:
        self._done[record_id] = None
        self._journal.append(("finish", record_id))
