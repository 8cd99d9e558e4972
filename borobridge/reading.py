"""What to ask Boro next for one stream, and where the stream stands after each reply (pure: no I/O).

Boro's documentation leaves ``update_token`` open: it may be a change counter, the Unix second of the last record
on the page, or the server's clock at the reply; compared with ``>=`` or ``>``; replies oldest- or newest-first;
the server's clock off ours by an hour. The rules below hold for every one of these readings at once, and no
setting says which one the server uses.

- **Trust a token only from a complete answer**: a token query or an open-ended period listing (no
  ``period_to``) whose page is not full, judged by the reply's own ``limit_value`` and ``total_pages``. Such an
  answer holds every change up to the reply, so its token is a safe place to continue from.
- **Ask inclusively**: a token is sent as ``token - 1``, so a record written later in the token's own second is
  offered again whatever the comparison; the transition memory drops the repeats by identity.
- **Behind a full page, read by period** on Boro's own clock, from the stream's :attr:`Position.floor` (every
  change before it is delivered): first the open window ``[floor, ...)``, the floor's own second read again
  inclusively; when that is full it is split where its page shows changes into a bounded window and a new open
  one. A bounded window that comes back full is split the same way. The two parts share their boundary second
  while it may be Boro's present; once a reply proved Boro's clock past it, nothing can join it any more (a new
  record, or a state that clears, takes Boro's present as its ``updated_at``) and the second part starts after it.
  A two-second window (the shortest Boro allows) with more than a page is paged, and so is an open window whose
  changes sit in its first two seconds, Boro's present the later one. A state that clears while a window is
  paged leaves it (or moves to its end) and shifts the pages: a record may slip onto a page already read. Only
  active states move, so a pass that listed one before its last page is checked by a listing of the window's
  active states only: every one still active (a cleared state never becomes active again) proves the pass whole;
  else the window is read again, and an open window whose first second Boro's clock has left is split at the
  clock first, what it read so far not used. A window whose passes never settle is read by task subsets, each
  group of tasks in one reply (:func:`task_subsets`). New changes arriving meanwhile do not make a pass change: an open
  window's token is its last full pass's first page's, which reads them again. But a state raised before an open
  window that clears while it is paged joins its present second by id, maybe on a page already read: when Boro's
  clock moved on during a pass, the states delivered as active are checked too (:func:`moved_on`).
  The window bounds are fixed while a window is read, windows are read oldest first, and the position between
  windows is always a whole boundary second, so a crash resumes at the last completed window.
- **Boro's clock only**: :attr:`Position.clock` is the latest Boro time a reply proved (record trigger times,
  time-like tokens); the bridge's clock never decides what a period covers.
- **A full page's records are not used**: its window is re-read, so transitions keep Boro's order.
- **Never guess a listing's direction**: an answer that holds two records of one task, at least one a cleared
  state (whose change time is not in the record), is *unsure* when neither its own exact changes nor the
  listings before it tell which way Boro listed it. It is not used either: its window is split (a token page's
  gap is read by period) until one second holds what it cannot order, where any order is Boro's.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import msgspec

from borobridge.boro.models import Token
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord
from borobridge.errors import BoroError, BoroReplyError

_moved = msgspec.structs.replace

UNIX_MIN: Final = 1_000_000_000  # tokens from here on read as Unix seconds (2001-09-09)
UNIX_MAX: Final = 10_000_000_000  # and nothing plausible lies beyond (a millisecond value does)
MAX_LEAD: Final = 2 * 86_400  # how far a time token may run ahead of the latest record time seen
MAX_PASSES: Final = 6  # full passes over the first-start snapshot while states keep moving
WINDOW_PASSES: Final = 3  # passes over a paged window (each one checked) before it is read by task subsets
MAX_PAGES: Final = 1_000  # a listing that claims more pages than this is cut short

Order = Literal["oldest_first", "newest_first"]
TaskCounts = Callable[[], Mapping[int, int]]  # the records of each task a paged read met, counted when asked


class Window(msgspec.Struct, frozen=True, array_like=True):
    """A period on Boro's ``updated_at`` clock: ``[low, high]``, or open-ended from ``low`` when ``high`` is None."""

    low: int
    high: int | None = None


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """Where one stream stands; the whole value is checkpointed, so a crash resumes from it.

    ``windows`` is the period read still to do, next window first; ``page`` and ``passes`` page a one-second
    window, an open window whose first second is Boro's present, or the first-start snapshot; ``fresh`` tells
    whether the current pass differs from the one before, ``pass_token`` is the token of its first page.
    ``subsets`` are the groups of tasks the first window is still to be read for, by id, once paging it did not
    settle (:func:`task_subsets`); never checkpointed (:func:`resumable`).
    """

    token: Token | None = None
    floor: int | None = None
    clock: int | None = None
    windows: tuple[Window, ...] = ()
    snapshot: bool = False
    page: int = 1
    passes: int = 0
    fresh: bool = False
    pass_token: Token | None = None
    subsets: tuple[tuple[int, ...], ...] = ()

    @property
    def busy(self) -> bool:
        """True while a period read or the first-start snapshot is unfinished: ask again without waiting."""
        return bool(self.windows) or self.snapshot


@dataclass(frozen=True, slots=True)
class Answer:
    """What one read step got back (one call, or the calls for ``"*"`` and the tasks seen, together)."""

    records: list[DecodedRecord]  # oldest change first
    token: Token  # the lowest token of the calls: the safer place to continue from
    full: bool  # some call had more than its page held
    clock: int | None  # the latest Boro time the replies prove
    votes: int = 0  # the listings' direction, as :func:`direction` counts it
    unsure: bool = False  # a task's order hangs on a direction nothing told
    room: int = 0  # the fewest records a page of these calls holds (their replies' ``limit_value``)


def answer_of(
    pages: Sequence[AlarmPage],
    hint: Order | int = "oldest_first",
    by_id: Collection[int] = (),
    known: Callable[[int], bool] | None = None,
) -> Answer:
    """The answer of one read step, in change order.

    With two calls (``"*"``, then the tasks ``by_id``), each task's records come from one listing only: the
    second for the tasks it names (it was answered later, so it is the more recent), the first for the others.
    Two listings are never interleaved, since only one listing says in which order a task's records changed.
    """
    votes = sum(direction(page.records, known) for page in pages)
    records = combined([page.records for page in pages], hint, by_id, votes)
    clocks = [clock for page in pages if (clock := page_clock(page)) is not None]
    told = votes or (isinstance(hint, int) and hint)
    return Answer(
        records=records,
        token=min(page.update_token for page in pages),
        full=any(page.full and page.size > 0 for page in pages),
        clock=max(clocks, default=None),
        votes=votes,
        unsure=not told and any(_order_hangs_on_direction(page.records) for page in pages),
        room=min((page.limit_value for page in pages), default=0),
    )


def _order_hangs_on_direction(records: Sequence[DecodedRecord]) -> bool:
    """Whether reading ``records`` the other way round would change a task's order: a task with two records, one
    of them a cleared state (its change time is not in the record, so nothing else can put it in its place)."""
    per_task = Counter(item.record.task_id for item in records)
    return any(per_task[item.record.task_id] > 1 for item in records if item.record.active is False)


def combined(
    listings: Sequence[Sequence[DecodedRecord]],
    hint: Order | int = "oldest_first",
    by_id: Collection[int] = (),
    votes: int | None = None,
) -> list[DecodedRecord]:
    """The records of one or two listings (``"*"``, then the tasks ``by_id``) in change order, each task's from
    one listing: the second for the tasks it names, the first for the others (see :func:`answer_of`).

    Both listings are of one kind, so Boro listed them the same way: their direction is read from the two together
    (``votes``, when the caller counted them already), which a few repeats in front of one listing cannot turn."""
    counted = votes if votes is not None else sum(direction(records) for records in listings)
    first, *rest = [_oriented(records, hint, counted) for records in listings]
    if not rest:
        return first
    named = frozenset(by_id)
    records = [item for item in first if item.record.task_id not in named]
    for listed in rest:
        records += listed
    return records


FirstMode = Literal["now", "since", "all"]


def first_position() -> Position:
    """A new stream's live lane, whatever ``first_start.mode``: the active states' snapshot, then the token.

    History (``since``, ``all``) is read beside it, by :func:`backfill_position`, so live alarms never wait for it;
    the active states are then raised by the history read, in order, and the snapshot only gives the token and the
    Boro time where the two lanes meet (:func:`backfill_bounded`).
    """
    return Position(snapshot=True)


def backfill_position(mode: FirstMode, since: int | None) -> Position | None:
    """A new stream's history read (None for ``now``): from ``since``, or from the beginning.

    Its window stays open, and unread, until the live lane's snapshot gives it its end (:func:`backfill_bounded`).
    """
    if mode == "now":
        return None
    return Position(windows=(Window(max(since or 1, 1)),))


def backfill_bounded(backfill: Position, live: Position, *, beside: bool = True) -> tuple[Position | None, Position]:
    """The history and live lanes once the live lane's snapshot is read: they meet at the snapshot's floor.

    The history ends at the floor, a Boro time the snapshot proved, so it never reads the present. The snapshot's
    token follows only what changed after its reply, which may be later than the floor (a change counter tells no
    time), so the live lane first reads the open window from the floor's second by period, then follows tokens:
    every change after the floor is the live lane's, in order, and the shared second is read by both (the
    transition memory drops the repeat). Without a floor past the history's start, the live lane reads the whole
    history itself and there is no history lane. A history bounded already (a resumed stream) stays as it is.
    Not ``beside`` (``first_start.history: first``), the live lane reads the whole history itself, in order.
    """
    if len(backfill.windows) != 1 or backfill.windows[0].high is not None:
        return backfill, live
    start = backfill.windows[0].low
    if not beside or live.floor is None or live.floor - 1 <= start:
        return None, _moved(live, windows=(Window(start),))
    return _moved(backfill, windows=(Window(start, live.floor),)), _moved(live, windows=(Window(live.floor - 1),))


def backfill_remaining(backfill: Position | None, clock: int | None) -> int | None:
    """Seconds of Boro time between the history read's next window and its end (0 once done; None: unknown).

    A history not yet bounded (or written by a release that read it up to the present) ends at ``clock``.
    """
    if backfill is None or not backfill.busy:
        return 0
    end = backfill.windows[-1].high
    latest = end if end is not None else _later(clock, backfill.clock)
    return None if latest is None else max(latest - backfill.windows[0].low, 0)


def next_query(position: Position, base: AlarmQuery) -> AlarmQuery:
    """The one TaskAlarms call that moves ``position`` on."""
    if position.snapshot:
        return replace(base, active_states_only=True, update_token=None, page=position.page)
    if position.windows:
        window = position.windows[0]
        checking = verifying(position)
        return replace(
            base,
            task_ids=list(position.subsets[0]) if position.subsets else base.task_ids,
            update_token=None,
            period_from=None if checking and window.high is None else window.low,
            period_to=window.high,
            page=position.page,
            active_states_only=checking,
        )
    if position.token is None:
        raise ValueError("a position without token, window or snapshot has nothing to read")
    return replace(base, update_token=_inclusive(position.token), page=1)


def check_reply(position: Position, page: AlarmPage) -> None:
    """Refuse a reply whose token no Boro could have sent (a millisecond value, a jump of years)."""
    token = page.update_token
    if not math.isfinite(token) or token < 0 or token >= UNIX_MAX:
        raise BoroReplyError(
            f"update_token {token!r} is not a plausible token (expected a change counter or a Unix time in seconds)"
        )
    latest = max(filter(None, (position.clock, _records_clock(page.records))), default=None)
    if latest is not None and token >= UNIX_MIN and token > latest + MAX_LEAD:
        raise BoroReplyError(
            f"update_token {token!r} is more than {MAX_LEAD // 3600} h ahead of the latest Boro time seen ({latest})"
        )


def checked_pages(position: Position, results: Sequence[AlarmPage | BoroError]) -> list[AlarmPage]:
    """The pages of one read at ``position``, or the first error among them (a refused token counts as one)."""
    pages: list[AlarmPage] = []
    for result in results:
        if isinstance(result, BoroError):
            raise result
        check_reply(position, result)
        pages.append(result)
    return pages


def after_reply(position: Position, page: Answer, *, fresh: bool, tasks: TaskCounts | None = None) -> Position:
    """Where the stream stands once ``page`` (read at ``position``) was fed; ``fresh``: it yielded transitions
    (in a paged read: the pass so far differs from the one before). ``tasks``: for a paged window, the records
    of each task the read met so far, asked for only when the window does not settle and is split by them."""
    clock = _later(position.clock, page.clock)
    position = _moved(position, clock=clock)
    if position.snapshot:
        return _after_snapshot_page(position, page, fresh=fresh)
    if position.windows:
        return _after_window(position, page, fresh=fresh, tasks=tasks or dict)
    if page.full or page.unsure:  # the token cannot be trusted, or its page not ordered: read the gap by period
        return _moved(position, windows=(Window(_gap_start(position, page)),), page=1, passes=0, fresh=False)
    return _moved(position, token=_forward(position.token, page.token), floor=_later(position.floor, clock))


def usable(position: Position, page: Answer) -> bool:
    """Whether the records of ``page`` (the answer for ``position``) are fed.

    A full page is read again in smaller windows, oldest first, so its records would come too early; only the
    pages of a paged read (the snapshot, one crowded second) are used as they come. An unsure page is read again
    too, unless its window cannot be narrowed.
    """
    if paged(position):
        return True
    if position.subsets:  # a window read by task subsets is split no further in time
        return not page.full
    return not page.full and not (page.unsure and _narrowable(position, page))


def _narrowable(position: Position, page: Answer) -> bool:
    """Whether the answer's read can be made again in smaller windows: a token page's gap, a bounded window of
    more than one second, an open window that is not in Boro's present."""
    if not position.windows or position.snapshot:
        return not position.snapshot
    window = position.windows[0]
    if window.high is None:
        return not _in_the_present(window, position.clock, page)
    return window.high - window.low > 1


def resumable(position: Position) -> Position:
    """The position to checkpoint: a paged read in progress starts over, since its pages are fed only whole, and
    so does a window read by task subsets (the memory drops what the subsets read already delivered)."""
    if paged(position) or position.subsets:
        return _moved(position, page=1, passes=0, fresh=False, pass_token=None, subsets=())
    return position


def same_read(before: Position, after: Position) -> bool:
    """Whether ``after`` still pages the listing ``before`` paged (the snapshot, or the same window and tasks)."""
    if before.snapshot:
        return after.snapshot
    return bool(after.windows) and after.windows[0] == before.windows[0] and after.subsets == before.subsets


def narrowed(before: Position, after: Position) -> bool:
    """Whether ``after`` reads the window ``before`` read again in smaller windows, or by task subsets (what it
    read is not used)."""
    if before.snapshot or not before.windows or not after.windows:
        return False
    if after.subsets and not before.subsets:
        return after.windows[0] == before.windows[0]
    return after.windows[0].low == before.windows[0].low and after.windows[0] != before.windows[0]


def paged(position: Position) -> bool:
    """Whether ``position`` reads a listing page by page: the first-start snapshot, or one crowded second."""
    return position.snapshot or (bool(position.windows) and _paged(position))


def pages_from(position: Position, page: Answer) -> bool:
    """Whether ``page`` belongs to a listing read page by page: ``position`` pages already, or ``page`` is the
    first page of an open window that is full in Boro's present (the page that decides it is paged)."""
    if paged(position):
        return True
    if not position.windows or not page.full:
        return False
    if position.subsets:  # one task with more than a page: paged by itself
        return len(position.subsets[0]) == 1
    return _in_the_present(position.windows[0], position.clock, page)


def page_clock(page: AlarmPage) -> int | None:
    """The latest Boro time this page proves: its records' trigger times and a time-like token."""
    return _later(_records_clock(page.records), _time_of(page.update_token))


def _time_of(token: Token | None) -> int | None:
    """A token read as Boro time, when it can be one (a change counter stays far below Unix times of today)."""
    return int(token) if token is not None and UNIX_MIN <= token < UNIX_MAX else None


def in_change_order(records: Sequence[DecodedRecord], hint: Order | int = "oldest_first") -> list[DecodedRecord]:
    """The records oldest change first, whichever way Boro listed them.

    The listing's direction is read from the records whose change time is exact (an event's or an active state's
    trigger time; a cleared state's is not in the record), counted together with ``hint`` when it is the direction
    seen in this kind of listing so far (:func:`direction`, as a sum). When they say nothing (one record, all
    cleared, all in one second, no listing before), the configured order ``hint`` decides. Records with an exact
    change time are then put in order of it, the others staying beside their neighbours: a reply that mixes
    orders (repeats put in front) is put right.
    """
    return _oriented(records, hint, direction(records))


def _oriented(records: Sequence[DecodedRecord], hint: Order | int, votes: int) -> list[DecodedRecord]:
    if isinstance(hint, int):  # what earlier replies of this kind showed counts as well
        votes += hint
    newest_first = votes < 0 or (not votes and hint == "newest_first")
    return _by_second(list(reversed(records)) if newest_first else list(records))


def _by_second(records: list[DecodedRecord]) -> list[DecodedRecord]:
    """The records in order of the second they changed in, keeping their order within a second."""
    seconds = _seconds_changed(records)
    if all(a <= b for a, b in itertools.pairwise(seconds)):
        return records
    order = sorted(range(len(records)), key=seconds.__getitem__)  # stable: a reply mixing orders is put right
    return [records[i] for i in order]


def _seconds_changed(records: list[DecodedRecord]) -> list[int]:
    """The second each record changed in, where the record tells it exactly; a cleared state keeps its
    neighbour's (its end time is the probe's, which can be off by seconds or minutes)."""
    seconds: list[int] = []
    previous = 0
    for item in records:
        if item.record.active is not False:
            previous = item.record.trigger_time
        seconds.append(previous)
    return seconds


def direction(records: Sequence[DecodedRecord], known: Callable[[int], bool] | None = None) -> int:
    """Evidence of a listing's direction: pairs of exact changes in rising order minus those falling.

    Within one second the record ids decide: Boro numbers records as it creates them, so among events and active
    states (whose change is their creation) a later id is a later change. With ``known`` (the records fed before),
    the records new to the stream count alone when they tell anything: a server may put repeats anywhere.
    """
    exact = [(item.record.trigger_time, item.record.id) for item in records if item.record.active is not False]
    if known is not None:
        fresh = [change for change in exact if not known(change[1])]
        if len(fresh) < len(exact) and (votes := _rising_minus_falling(fresh)):
            return votes
    return _rising_minus_falling(exact)


def _rising_minus_falling(changes: list[tuple[int, int]]) -> int:
    return sum((a < b) - (a > b) for a, b in itertools.pairwise(changes))


def read_bound(query: AlarmQuery, clock: int | None) -> int | None:
    """The latest ``updated_at`` a record of this answer can have: the window's end, else the Boro time seen."""
    return query.period_to if query.period_to is not None else clock


def sweep_position(position: Position, window: int, boro_clock: int | None = None) -> Position | None:
    """The reconciliation sweep's read: ``window`` seconds of Boro's clock back from the latest Boro time known
    (``boro_clock``: any stream's of this server), up to Boro's present.

    It is a throwaway position, read with :func:`next_query` and :func:`after_reply` like any other, that never
    touches the stream's own. Its windows are the past up to the stream's floor, then an open one from the floor
    on: a task ``"*"`` left out before the bridge saw it may have changed after the last Boro time any reply
    proved, and only an open window reaches that. A stream that never proved a Boro time of its own (all its
    probes stopped from the start) is swept from the server's. What the open window finds of a task the token
    path already asks for by id is no miss (see :func:`missed`).
    """
    reach = _later(position.floor, boro_clock)
    if reach is None or position.busy:
        return None
    low = max(reach - window, 1)
    if position.floor is None or position.floor - 1 <= low:
        return Position(clock=_later(position.clock, boro_clock), windows=(Window(low),))
    windows = (Window(low, position.floor - 1), Window(position.floor - 1))
    return Position(clock=_later(position.clock, boro_clock), windows=windows)


def past_the_floor(sweep: Position, start: Position) -> bool:
    """Whether the window ``sweep`` reads now lies in the open window of ``start`` (the sweep as it began), or in
    one it was split into: past the floor, where the token path has not read everything yet."""
    tail = start.windows[-1].low
    return bool(sweep.windows) and (sweep.windows[0].high is None or sweep.windows[0].high > tail)


def missed(sweep: Position, start: Position, task_id: int, covered: Collection[int]) -> bool:
    """Whether a transition of ``task_id`` the sweep found, read at ``sweep``, is one the token path missed.

    Before the floor every find is. Past it, the token path reads the tasks it asks for by id (``covered``: the
    tasks seen when the sweep began, and those the stream's own reads learned since) on its own, later: a find
    there is no miss; only one of a task it never asked for, that ``"*"`` left out, is.
    """
    return not past_the_floor(sweep, start) or task_id not in covered


def _after_snapshot_page(position: Position, page: Answer, *, fresh: bool) -> Position:
    """The first start ``now``: the first page's token follows every change made while the snapshot is read.

    The floor is the latest trigger time the whole snapshot showed: with small pages the first one may show only
    the oldest states, and a period read from there would deliver history the start was meant to skip.
    """
    if position.token is None:
        position = _moved(position, token=page.token)
    if more_pages(position, page):
        return _moved(position, page=position.page + 1, fresh=position.fresh or fresh)
    if position.page > 1 and (position.fresh or fresh) and position.passes + 1 < MAX_PASSES:
        return _moved(position, page=1, passes=position.passes + 1, fresh=False)  # states moved: read again
    floor = _later(position.clock, _time_of(position.token))
    return _moved(position, snapshot=False, page=1, passes=0, fresh=False, floor=floor)


def _after_window(position: Position, page: Answer, *, fresh: bool, tasks: TaskCounts) -> Position:
    window, rest = position.windows[0], position.windows[1:]
    if _paged(position):
        return _after_paged_window(position, page, fresh=fresh, tasks=tasks)
    if position.subsets:
        return _after_subset(position, page, fresh=fresh)
    if page.full and _in_the_present(window, position.clock, page):
        return _moved(position, page=2, fresh=fresh, pass_token=page.token)
    if page.full or (page.unsure and _narrowable(position, page)):
        return _moved(position, windows=(*_split(window, position.clock, page.records), *rest), fresh=False)
    return _window_done(position, page)


def starts_pass(position: Position) -> bool:
    """Whether ``position`` reads the first page of a pass over a paged listing (not of a window's check)."""
    return position.page == 1 and not verifying(position)


def pass_clock(position: Position, page: Answer) -> int | None:
    """The Boro time proved once ``page``, read at ``position``, is read."""
    return _later(position.clock, page.clock)


def moved_on(position: Position, page: Answer, since: int | None) -> bool:
    """Whether ``page``, the last page of a pass over an open window paged in Boro's present, proves Boro's clock
    past ``since``, the time proved when the pass's first page was read, or a change counter past the pass's
    first token (a counter proves no time, and a cleared state's record shows only when it was raised).

    Boro wrote changes while the pass was read then, and a state that cleared meanwhile takes Boro's present as
    its ``updated_at`` but keeps its id: listed among that second's records, it may sit on a page already read.
    Unless the check finds it still active, the pass is not used, since its task's later changes on later pages
    would be delivered before it (the first page's token reads it only afterwards)."""
    window = position.windows[0] if position.windows and not position.snapshot else None
    if window is None or window.high is not None or position.page == 1:
        return False
    clock = pass_clock(position, page)
    if since is not None and clock is not None and clock > since:
        return True
    first = position.pass_token
    return first is not None and _time_of(first) is None and _time_of(page.token) is None and page.token > first


def verifying(position: Position) -> bool:
    """Whether ``position`` reads a paged window's check pass: the window's active states only (an open window's:
    every active state), to see whether one listed on a page before the last cleared (and moved) while the pass
    before it was read, or one delivered as active before cleared into a page already read (:func:`moved_on`)."""
    return bool(position.windows) and not position.snapshot and position.passes % 2 == 1


def _after_paged_window(position: Position, page: Answer, *, fresh: bool, tasks: TaskCounts) -> Position:
    checking = verifying(position)
    starting = position.page == 1 and not checking and not position.subsets  # a subset's token is of its tasks only
    pass_token = page.token if starting else position.pass_token
    if more_pages(position, page):
        return _moved(position, page=position.page + 1, fresh=position.fresh or fresh, pass_token=pass_token)
    again = (position.page > 1 or checking) and (position.fresh or fresh)
    window = position.windows[0]
    clock = position.clock if window.high is None and not position.subsets else None
    if checking and again and clock is not None and clock > window.low:
        return _moved(  # Boro's clock left the window's first second: a bounded window settles, an open one not
            position,
            windows=(Window(window.low, clock), Window(clock), *position.windows[1:]),
            page=1,
            passes=0,
            fresh=False,
            pass_token=None,
        )
    if again and position.passes + 1 < 2 * WINDOW_PASSES:  # check the pass, or read again after a failed check
        kept = None if checking and not position.subsets else pass_token  # a new pass gets its own first token
        return _moved(position, page=1, passes=position.passes + 1, fresh=False, pass_token=kept)
    if again and not position.subsets and (counts := tasks()):  # records kept moving: each subset in one reply
        subsets = task_subsets(counts, page.room)
        return _moved(position, page=1, passes=0, fresh=False, pass_token=pass_token, subsets=subsets)
    return _read_done(position, page, pass_token)


def _after_subset(position: Position, page: Answer, *, fresh: bool) -> Position:
    """A window read by task subsets, after the first page of one: a subset with more than a page is halved, and
    one task with more than a page is paged by itself."""
    subset = position.subsets[0]
    if not page.full:
        return _read_done(position, page, position.pass_token)
    if len(subset) > 1:
        halves = (subset[: len(subset) // 2], subset[len(subset) // 2 :])
        return _moved(position, subsets=(*halves, *position.subsets[1:]), fresh=False)
    return _moved(position, page=2, fresh=fresh)


def task_subsets(tasks: Mapping[int, int], room: int) -> tuple[tuple[int, ...], ...]:
    """The tasks in groups whose records (as many as ``tasks`` counts for each) fit one page of ``room`` records.

    A reply that is not full lists all its tasks' records in the window at one moment, which no amount of moving
    records can shift between pages: each task's records come whole and in Boro's order, by id from the tasks
    a pass met. A window is read this way once paging it did not settle; a task seen by no pass is left to the
    token path and the sweep."""
    subsets: list[tuple[int, ...]] = []
    group: list[int] = []
    held = 0
    for task in sorted(tasks):
        if group and held + tasks[task] >= room:
            subsets.append(tuple(group))
            group, held = [], 0
        group.append(task)
        held += tasks[task]
    return (*subsets, tuple(group)) if group else tuple(subsets)


def _read_done(position: Position, page: Answer, pass_token: Token | None) -> Position:
    """The read under way is whole: the window's next task subset, else the window."""
    if len(position.subsets) > 1:
        return _moved(position, subsets=position.subsets[1:], page=1, passes=0, fresh=False)
    return _window_done(_moved(position, subsets=()), page, pass_token)


def _window_done(position: Position, page: Answer, pass_token: Token | None = None) -> Position:
    """The first window is read whole. An open one gives the token to continue from: the reply's, or for a paged
    one its last pass's first page's, since a change made while later pages were read may sit on an earlier one.
    The floor follows: a paged open window began in Boro's present, so only the changes before its first second
    are surely delivered (a later reply proving a later time says nothing of the pages read before it)."""
    window, rest = position.windows[0], position.windows[1:]
    done = _moved(position, page=1, passes=0, fresh=False, pass_token=None)
    if window.high is None:  # the open window held every change up to the reply: its token is safe
        token = _forward(position.token, page.token if pass_token is None else pass_token)
        reached = position.clock if pass_token is None else window.low
        return _moved(done, windows=rest, token=token, floor=_later(position.floor, reached))
    return _moved(done, windows=rest, floor=_later(position.floor, window.high - 1))


def _in_the_present(window: Window, clock: int | None, page: Answer) -> bool:
    """Whether a full open window is paged rather than split: its page shows no change after its second second,
    and no reply (this one included) proved Boro's clock past that second.

    With nothing after its first second, a bounded window would end in Boro's future, and a change made later in
    that second would fall between it and the open window after it. With changes in its second second, Boro's
    present, a split would share that second and page it twice (bounded, then open); the shortest bounded window
    Boro allows holds both seconds anyway."""
    clock = _later(clock, page.clock)
    present = window.low + 1
    if window.high is not None or (clock is not None and clock > present):
        return False
    return not any(item.record.trigger_time > present for item in page.records if item.record.active is not False)


def _split(window: Window, clock: int | None, records: Sequence[DecodedRecord]) -> tuple[Window, ...]:
    """Two windows, oldest first, sharing their boundary second while it may still be Boro's present (a change
    made later in it would fall after the first); once Boro's clock is past it, the second window starts after it.

    The split is where the full page shows records: the median of its exact change times in the window, moved
    one second inside it when it is an end second, so a long stretch with nothing in it costs no halving (a page
    of changes in the last second of ``[1, B]`` splits off ``[B - 1, B]``, not half of Unix time). Without such
    times a bounded window is halved and an open one splits at the latest Boro time seen.
    """
    high = window.high if window.high is not None else math.inf
    seen = sorted(
        t
        for t in (item.record.trigger_time for item in records if item.record.active is not False)
        if window.low <= t <= high
    )
    if seen:
        middle = max(seen[len(seen) // 2], window.low + 1)
        middle = middle if window.high is None else min(middle, window.high - 1)
    elif window.high is None:
        middle = max(window.low + 1, clock or 0)
    else:
        middle = (window.low + window.high) // 2
    if _over(middle, clock) and (window.high is None or middle + 1 < window.high):
        return Window(window.low, middle), Window(middle + 1, window.high)  # nothing joins a second gone by
    return Window(window.low, middle), Window(middle, window.high)


def _over(second: int, clock: int | None) -> bool:
    """Whether a reply proved Boro's clock past ``second``: no change can join it any more (a new record, or a
    state that clears, takes Boro's present as its ``updated_at``), so a window read whole after that holds it."""
    return clock is not None and clock > second


def _paged(position: Position) -> bool:
    """A one-second window cannot be split in time, nor an open one in Boro's present: they are read page by page.
    Read by task subsets, only a task with more than a page is."""
    window = position.windows[0]
    if position.page > 1 or position.passes > 0:
        return True
    return not position.subsets and window.high is not None and window.high - window.low <= 1


def more_pages(position: Position, page: Answer) -> bool:
    """Whether a paged read has a page after this one (``page`` full, and the page limit not reached)."""
    return page.full and position.page < MAX_PAGES


def _gap_start(position: Position, page: Answer) -> int:
    """Where the period read behind a full token page starts: the floor's second (every change before it is
    delivered; a change made later in its own second is read again); with none known yet, just before the oldest
    record on a page listed oldest first, else at the beginning (a page listed newest first
    holds the newest changes of the gap, and nothing else says where it starts)."""
    if position.floor is not None:
        return max(position.floor, 1)
    if page.votes <= 0:
        return 1
    oldest = min((item.record.trigger_time for item in page.records), default=position.clock or 1)
    return max(oldest - 1, 1)


def _inclusive(token: Token) -> Token:
    return token - 1 if token >= 1 else token


def _forward(current: Token | None, new: Token) -> Token:
    """Cursors never move backwards: an older token only re-reads what was delivered."""
    return new if current is None or new > current else current


def _later(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _records_clock(records: Iterable[DecodedRecord]) -> int | None:
    return max((item.record.trigger_time for item in records), default=None)
