"""Records to transitions: ``raised``, ``cleared`` and ``event``, each emitted once (pure, no I/O).

A stream's :class:`TransitionMemory` knows which alarms the bridge has raised and which record ids are done
(event emitted, or state cleared), each with the latest Boro time its change can have. Feeding it a page yields
the new transitions; changes are journalled so that a page whose delivery failed can be rolled back and replayed
identically. It also knows which records that cannot become events were dead-lettered already (by a digest of
their bytes), so a record read again is dead-lettered once. Finished ids and dead letters are forgotten by Boro
time, never by count: only once no read can reach back to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import StrEnum

import msgspec

from borobridge.boro.models import AlarmRecord
from borobridge.boro.queries import DecodedRecord, RejectedRecord

BUCKET_SECONDS = 60  # finished ids are kept in buckets of this many seconds of Boro time


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


class Finished(msgspec.Struct, frozen=True, array_like=True):
    """Record ids finished in one bucket: none of their changes is later than ``until`` (Boro time)."""

    until: int
    ids: list[int]


class _Dated:
    """Ids kept in buckets of Boro time, each bucket's ``until`` no earlier than its ids' changes."""

    def __init__(self, buckets: Iterable[Finished] = ()) -> None:
        self.buckets: dict[int, set[int]] = {}
        self.bucket_of: dict[int, int] = {}
        for bucket in buckets:
            for record_id in bucket.ids:
                self.put(record_id, bucket.until)

    def listed(self) -> list[Finished]:
        return [Finished(until, sorted(ids)) for until, ids in sorted(self.buckets.items())]

    def put(self, record_id: int, until: int) -> None:
        self.buckets.setdefault(until, set()).add(record_id)
        self.bucket_of[record_id] = until

    def drop(self, record_id: int) -> None:
        until = self.bucket_of.pop(record_id)
        bucket = self.buckets[until]
        bucket.discard(record_id)
        if not bucket:
            del self.buckets[until]

    def date_unknown(self, until: int) -> None:
        """The first Boro time known dates the ids kept without one."""
        for record_id in list(self.buckets.get(UNKNOWN_TIME, ())):
            self.drop(record_id)
            self.put(record_id, until)

    def forget_before(self, horizon: int, pending: set[int]) -> None:
        """Forget whole buckets before ``horizon`` that hold no id of ``pending``."""
        for until in [until for until in self.buckets if until < horizon]:
            if self.buckets[until].isdisjoint(pending):
                for record_id in self.buckets.pop(until):
                    del self.bucket_of[record_id]


class TransitionMemory:
    """The raised alarms, the finished record ids and the dead letters of one stream that a read may still meet."""

    def __init__(
        self, active: Iterable[int] = (), finished: Iterable[Finished] = (), dead_letters: Iterable[Finished] = ()
    ) -> None:
        self._active: dict[int, None] = dict.fromkeys(active)
        self._finished = _Dated(finished)
        self._dead = _Dated(dead_letters)
        self._journal: list[tuple[str, int]] = []
        self._committed = 0  # journal entries committed so far, ever: marks count from the first feed
        self._until = 0  # the bucket of the records being fed

    @property
    def active(self) -> list[int]:
        """Ids of the alarms currently raised, in the order they were raised."""
        return list(self._active)

    def knows(self, record_id: int) -> bool:
        """Whether a record was fed before: an event or a state finished, or a state still raised."""
        return record_id in self._active or record_id in self._finished.bucket_of

    @property
    def finished(self) -> list[Finished]:
        """Finished record ids by bucket, oldest bucket first."""
        return self._finished.listed()

    @property
    def dead_letters(self) -> list[Finished]:
        """Digests of the records dead-lettered (:func:`dead_letter_digest`) by bucket, oldest bucket first."""
        return self._dead.listed()

    @property
    def done(self) -> set[int]:
        """Every finished record id still remembered."""
        return set(self._finished.bucket_of)

    def feed(self, records: Iterable[DecodedRecord], until: int | None = None) -> list[AlarmTransition]:
        """The transitions these records add, in their order; repeats yield nothing.

        ``until`` is the latest Boro time any of these records can have changed at (None: not known yet, they
        are kept until a later feed gives a time).
        """
        self._until = _bucket(until)
        if until is not None:
            self._finished.date_unknown(self._until)
            self._dead.date_unknown(self._until)
        transitions: list[AlarmTransition] = []
        for item in records:
            transitions += self._transitions_of(item)
        return transitions

    def dead_letter(self, rejected: Iterable[RejectedRecord]) -> list[RejectedRecord]:
        """The records among ``rejected`` not dead-lettered before, remembered from now on, dated like the records
        fed last (they came in the same read)."""
        fresh: list[RejectedRecord] = []
        for item in rejected:
            digest = dead_letter_digest(item.raw)
            if digest not in self._dead.bucket_of:
                self._dead.put(digest, self._until)
                self._journal.append(("dead", digest))
                fresh.append(item)
        return fresh

    def mark(self) -> int:
        """A point in what was fed so far, to commit up to later (a page fed after it stays uncommitted)."""
        return self._committed + len(self._journal)

    def commit(self, through: int | None = None) -> None:
        """Keep what was fed up to ``through`` (a :meth:`mark`; default: everything fed)."""
        kept = len(self._journal) if through is None else through - self._committed
        del self._journal[:kept]
        self._committed += kept

    def forget_before(self, horizon: int) -> None:
        """Forget the finished ids and dead letters whose changes all lie before ``horizon`` (Boro time), once no
        read reaches them.

        Only committed ones go: a bucket that holds ids fed since the last commit stays, so a rollback finds them.
        """
        self._finished.forget_before(horizon, {key for change, key in self._journal if change == "finish"})
        self._dead.forget_before(horizon, {key for change, key in self._journal if change == "dead"})

    def rollback(self) -> None:
        """Undo everything fed since the last commit."""
        for change, key in reversed(self._journal):
            if change == "raise":
                del self._active[key]
            elif change == "finish":
                self._finished.drop(key)
            elif change == "dead":
                self._dead.drop(key)
            else:
                self._active[key] = None
        self._journal.clear()

    def _transitions_of(self, item: DecodedRecord) -> list[AlarmTransition]:
        record = item.record
        if record.id in self._finished.bucket_of:
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
        self._finished.put(record_id, self._until)
        self._journal.append(("finish", record_id))


def dead_letter_digest(raw: bytes) -> int:
    """What identifies a dead-lettered record: the first 63 bits of the SHA-256 of its bytes (it may lack an id)."""
    return int.from_bytes(hashlib.sha256(raw).digest()[:8]) >> 1


UNKNOWN_TIME = 2**53  # the bucket of ids finished before any Boro time was known: kept until one is


def _bucket(until: int | None) -> int:
    """The end of the bucket that holds ``until``: a bucket's ``until`` is never earlier than its ids' changes."""
    if until is None:
        return UNKNOWN_TIME
    return -(-until // BUCKET_SECONDS) * BUCKET_SECONDS
