"""The pages of one paged read (a crowded window, or the first start's snapshot), pass after pass, until the read is
whole: which passes can be trusted, and the records they hold, in the order to feed them."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

from borobridge.boro.queries import AlarmPage, DecodedRecord, RejectedRecord

_Item = TypeVar("_Item")


@dataclass
class Gathered:
    """The pages of a paged read so far, every pass together: the latest version of each record.

    Each listing is kept in the order of the latest sighting of each record, so once the read is whole its records
    stand as the last pass listed them (records only an earlier pass saw beside the ones they followed then). Only a
    state that clears moves in a listing: it leaves the window (or moves to its end) and every record behind it
    moves one place forward, so one of them may slip onto a page already read. A pass of a window that listed active
    states on a page before its last is therefore *changed* (it may have missed a record), and checked: a pass of
    the window's active states only (:func:`reading.verifying`) confirms it when each of those states is still
    active, since a state that cleared never becomes active again. A check that misses one is changed: the window is
    read again. The snapshot, a listing of active states itself, is *changed* when a pass saw a record the pass
    before did not, or missed one the pass before saw. A listing whose page came back short has ended for the pass:
    changes made later fill that page's room first, on a page already read, so the pages after it (asked while the
    other listing goes on) are not gathered; the pass's first token reads those changes after it.
    """

    listings: list[dict[int, DecodedRecord]] = field(default_factory=list)  # one per call, in listing order
    rejected: dict[bytes, RejectedRecord] = field(default_factory=dict)
    tasks: tuple[int, ...] | None = None  # the tasks asked for by id, the same on every page of the read
    clock: int | None = None  # the Boro time proved when this pass's first page was read
    _pass: int = 0
    _previous: frozenset[int] | None = None  # the ids the pass before this one saw
    _listed: list[set[int]] = field(default_factory=list)  # the same, for each listing apart
    _ended: list[bool] = field(default_factory=list)  # for each listing, whether this pass read its last page
    _shifted: bool = False  # a bounded window's pass met a record again on a later page: records arrived meanwhile
    _alone: set[int] = field(default_factory=set)  # tasks this pass saw through "*" alone, not asked for by id
    _unnamed: set[int] = field(default_factory=set)  # those, when "*" lost tasks during the pass: asked by id next
    _star_lost: bool = False  # "*" lost tasks during the pass: a task no pass saw may have slipped, read again
    _movable: list[set[int]] = field(default_factory=list)  # per listing, the active states this pass listed
    # on a page before its last
    _confirmed: list[set[int]] = field(default_factory=list)  # per listing, those the check found still active
    _held: set[int] = field(default_factory=set)  # states delivered as active that this pass did not list
    _before: list[dict[int, int | None]] = field(default_factory=list)  # per listing, the record each one followed
    # when last seen (None: first of its pass)
    _last: list[int | None] = field(default_factory=list)  # per listing, the record this pass saw last so far
    _snapshot: bool = False  # the read is the first start's snapshot (its passes compare, none is checked)

    def add(
        self,
        pages: list[AlarmPage],
        pass_number: int,
        *,
        last_page: bool,
        snapshot: bool = False,
        held: Collection[int] = (),
        bounded: bool = False,
        star: bool = False,
    ) -> bool:
        """Gather one page of each call of pass ``pass_number``; True when this pass has changed so far.

        ``held``: the states delivered as active before, when Boro's clock moved on while an open window's pass
        was read (:func:`reading.moved_on`); one that cleared meanwhile may sit on a page already read, so each one
        this pass did not list is checked too."""
        self._snapshot = snapshot
        if pass_number != self._pass:
            self._start_pass(pass_number)
        self._make_room(len(pages))
        ids: set[int] = set()
        for index, (listing, listed, page) in enumerate(zip(self.listings, self._listed, pages, strict=False)):
            if self._ended[index]:  # its last page was read: what now fills that page's room is not past it
                continue
            self._ended[index] = not page.full
            if bounded and not listed.isdisjoint(item.record.id for item in page.records):
                self._shifted = True
            for item in page.records:
                listing.pop(item.record.id, None)
                listing[item.record.id] = item
                self._before[index][item.record.id], self._last[index] = self._last[index], item.record.id
                ids.add(item.record.id)
                listed.add(item.record.id)
                if not last_page and item.record.active is True:
                    self._movable[index].add(item.record.id)
            self.rejected.update((item.raw, item) for item in page.rejected)
        self._held.update(state for state in held if not any(state in listed for listed in self._listed))
        if snapshot:
            return self._snapshot_changed(ids, last_page=last_page)
        if star and last_page:
            self._alone = self._seen_through_star_alone()
            self._star_lost = self._star_shrank()
            self._unnamed = self._alone if self._star_lost else set()
            self.tasks = tuple(sorted({*(self.tasks or ()), *self._unnamed}))  # the next passes ask for them by id
        return any(self._movable) or bool(self._held) or self._shifted or self._star_lost

    def _start_pass(self, pass_number: int) -> None:
        """Reset what belongs to one pass; the pass before it is remembered by the ids it saw."""
        self._pass, self._previous = pass_number, self._seen()
        self._movable, self._confirmed, self._held, self._listed, self._ended = [], [], set(), [], []
        self._shifted, self._alone, self._unnamed, self._last, self._star_lost = False, set(), set(), [], False

    def _make_room(self, listings: int) -> None:
        """Per-listing state for ``listings`` calls (a pass may make one more than the pass before)."""
        _grow(self.listings, listings, dict)
        _grow(self._listed, listings, set)
        _grow(self._ended, listings, bool)
        _grow(self._movable, listings, set)
        _grow(self._before, listings, dict)
        _grow(self._last, listings, lambda: None)

    def _seen_through_star_alone(self) -> set[int]:
        """The tasks this pass saw through ``"*"`` and did not ask for by id."""
        star, named = self.listings[0], frozenset(self.tasks or ())
        return {star[record].record.task_id for record in self._listed[0]} - named

    def _star_shrank(self) -> bool:
        """Whether ``"*"`` lost tasks while this pass paged it, as far as the listing by id shows.

        ``"*"`` lists the tasks of running probes: a probe that stops takes its tasks' records out of it, and the
        records behind them move forward, maybe onto a page already read. For the tasks asked for by id that costs
        nothing (their records come from the listing by id), but a task seen through ``"*"`` alone, or one no
        listing has shown yet, may have lost a record that way. The sign: a task whose records ``"*"`` listed,
        with some the listing by id showed missing. A probe that stops with states on pages already read is also
        seen by the check (:meth:`check`).
        """
        if len(self._listed) < 2:
            return False
        star, by_id, seen = self.listings[0], self.listings[1], self._listed[0]
        listed_by_star = {star[record].record.task_id for record in seen}
        return any(by_id[record].record.task_id in listed_by_star and record not in seen for record in self._listed[1])

    def _snapshot_changed(self, ids: set[int], *, last_page: bool) -> bool:
        if self._previous is None:  # the first pass: everything is news
            return bool(ids)
        return not ids <= self._previous or (last_page and not self._previous <= self._seen())

    def _seen(self) -> frozenset[int]:
        """The ids this pass saw so far, in any listing."""
        return frozenset().union(*self._listed)

    def check(self, pages: list[AlarmPage], *, last_page: bool) -> bool:
        """Gather one page of each call of a check pass; True once it is whole and missed a state it checks.

        Each listing's states are checked in that listing: a state ``"*"`` no longer lists has not cleared, maybe,
        but its probe stopped, which moves ``"*"``'s records just the same."""
        _grow(self._confirmed, max(len(pages), len(self._movable)), set)
        for confirmed, page in zip(self._confirmed, pages, strict=False):
            confirmed.update(item.record.id for item in page.records if item.record.active is True)
        if not last_page:
            return False
        anywhere = set().union(*self._confirmed)
        where = [anywhere] * len(self._movable)
        if self._alone:  # records "*" alone listed: a state it no longer lists moved it, cleared or not
            where[0] = self._confirmed[0]
        missed = any(not movable <= confirmed for movable, confirmed in zip(self._movable, where, strict=True))
        return self._shifted or self._star_lost or missed or not self._held <= anywhere

    def whole(self, *, settled: bool) -> list[list[DecodedRecord]]:
        """The listings once the read is whole. A pass that no record can have slipped from (``settled``: its check
        found every state still active, or it listed none before its last page) holds the window entire: a record
        an earlier pass saw and it did not has left the window, and comes again where it moved to. That is judged
        for each listing apart: a state may clear between the ``"*"`` call and the call by id of one page, and one
        listing's record left at its old place would set a cleared state beside it in the wrong second."""
        if self._snapshot:
            return [list(listing.values()) for listing in self.listings]
        if settled:
            return [
                [item for item in listing.values() if item.record.id in listed]
                for listing, listed in zip(self.listings, self._listed, strict=False)
            ]
        return [self._anchored(index) for index in range(len(self.listings))]

    def _anchored(self, index: int) -> list[DecodedRecord]:
        """A listing whose passes never settled: the last pass's records in its order, and each record only an
        earlier pass saw right after the one it followed then, so that a cleared state keeps the neighbours its
        second is read from (:func:`reading.in_change_order`)."""
        listing, before = self.listings[index], self._before[index]
        listed = self._listed[index] if index < len(self._listed) else set()
        order = [record for record in listing if record in listed]
        placed = set(order)
        for record in listing:
            if record in placed:
                continue
            anchor = before.get(record)
            order.insert(order.index(anchor) + 1 if anchor in placed else 0, record)
            placed.add(record)
        return [listing[record] for record in order]

    def task_counts(self) -> dict[int, int]:
        """How many records of each task the read met in every pass so far; the tasks asked for by id, met or not."""
        counts = dict.fromkeys(self.tasks or (), 0)
        for listing in self.listings:
            for item in listing.values():
                counts[item.record.task_id] = counts.get(item.record.task_id, 0) + 1
        return counts

    def clear(self) -> None:
        """Forget the read: what belongs to the whole of it, then the pass under way."""
        self.listings.clear()
        self.rejected.clear()
        self.tasks = None
        self.clock = None
        self._before = []
        self._start_pass(0)
        self._previous = None


def _grow(items: list[_Item], length: int, make: Callable[[], _Item]) -> None:
    while len(items) < length:
        items.append(make())
