"""A crowded second read page by page while records leave it: nothing skipped, each task in Boro's order.

A state that clears moves out of the window, so every record behind it moves one place forward and one can slip
from the page not yet read to the page already read. A pass that listed active states before its last page is
checked by a listing of the window's active states only, and read again until its check finds them all still active.
"""

from __future__ import annotations

from collections.abc import Callable

from borobridge.boro.queries import AlarmQuery, DecodedRecord
from borobridge.reading import Position, Window
from borobridge.streams import Stream
from borobridge.transitions import TransitionMemory
from tests.support.pages import cut_page
from tests.support.records import decoded

SECOND = 1_790_000_000
LIMIT = 2
BASE = AlarmQuery(project_id=23, limit=LIMIT)


def active(record_id: int, at: int = SECOND) -> DecodedRecord:
    return decoded(record_id, trigger_time=at)


def cleared(record_id: int, at: int = SECOND) -> DecodedRecord:
    return decoded(record_id, trigger_time=at, active=False)


def event(record_id: int, at: int = SECOND) -> DecodedRecord:
    return decoded(record_id, type="event", active=None, trigger_time=at)


def crowded_second() -> Stream:
    window = Window(SECOND, SECOND + 1)
    return Stream("s", BASE, TransitionMemory(), Position(clock=SECOND + 1, windows=(window,)))


def read(
    stream: Stream, listing: list[DecodedRecord], total_pages: int, token: int = SECOND + 1
) -> tuple[list[str], Position]:
    """Feed the page the stream asks for next, cut from ``listing`` (Boro's order at that moment)."""
    [query] = stream.queries(stream.position)
    if query.active_states_only:
        listing = [item for item in listing if item.record.active is True]
    page = cut_page(query, listing, limit=LIMIT, token=token, total_pages=total_pages)
    fed = stream.feed(stream.position, [query], [page], "oldest_first")
    stream.position = fed.position
    return [f"{t.record.id}-{t.kind}" for t in fed.transitions], fed.position


def read_passes(stream: Stream, reads: list[tuple[list[DecodedRecord], int]], token: int = SECOND + 1) -> list[str]:
    """Feed pages until the window is done; each read is cut from the listing Boro has at that moment."""
    emitted: list[str] = []
    for listing, pages in reads:
        transitions, position = read(stream, listing, pages, token)
        emitted += transitions
        if not position.windows:
            return emitted
    raise AssertionError(f"the window was not finished after {len(reads)} reads")


def test_a_pass_whose_check_misses_a_state_it_listed_is_read_again() -> None:
    stream = crowded_second()
    listing = [active(1), event(2), event(3), event(4)]
    left = listing[1:]  # record 1 cleared after page 1 was read: it left, and record 3 slipped onto page 1
    read(stream, listing, 2)
    _, checking = read(stream, left, 2)
    assert (checking.page, checking.passes) == (1, 1), "a state listed before the last page: the pass is checked"
    assert stream.queries(checking)[0].active_states_only, "the check lists the window's active states only"
    _, position = read(stream, left, 2)  # record 1 is no longer active: the pass may have skipped a record
    assert position.windows, "a pass whose check misses a state may have skipped a record: read again"
    assert (position.page, position.passes) == (1, 2)
    assert not stream.queries(position)[0].active_states_only


def test_a_pass_whose_states_all_stayed_active_is_not_read_again() -> None:
    stream = crowded_second()
    listing = [active(1), event(2), event(3), active(4), event(5)]
    reads = [(listing, 3)] * 5  # the pass's three pages, then its check: the two states on one full page, one empty
    emitted = read_passes(stream, reads)
    assert sorted(emitted) == ["1-raised", "2-event", "3-event", "4-raised", "5-event"]


def test_a_pass_without_a_state_before_its_last_page_is_not_checked() -> None:
    stream = crowded_second()
    listing = [event(1), event(2), event(3), event(4), active(5)]
    reads = 0
    while stream.position.windows and reads < 6:
        read(stream, listing, 3)
        reads += 1
    assert reads == 3, "events never move, nor a state on the last page: one pass of three pages reads the window"


def test_a_clear_is_delivered_after_the_records_boro_lists_before_it() -> None:
    stream = crowded_second()
    late = SECOND + 1
    created_earlier = SECOND - 30
    first = [event(10), active(11), event(12), event(13), cleared(9, at=created_earlier), event(14, at=late)]
    left = [event(10), event(12), event(13), cleared(9, at=created_earlier), event(14, at=late)]  # 11 cleared later
    reads = [(first, 3), (left, 3), (left, 3)] + [(left, 3)] * 9  # pass 1 skips 12, the next passes find it
    emitted = read_passes(stream, reads)
    assert emitted.index("12-event") < emitted.index("9-cleared"), emitted
    assert "11-raised" not in emitted, "11 left the window: it comes where it moved to, raised before cleared"


def present_second() -> Stream:
    """An open window whose first second is Boro's present (no reply proved a later time): it is paged."""
    return Stream("s", BASE, TransitionMemory(), Position(token=7, clock=SECOND, windows=(Window(SECOND),)))


def test_the_first_page_of_an_open_window_paged_in_the_present_is_delivered() -> None:
    """The open window's first page decides that it is paged; its records belong to the first pass, and a pass
    that ends on an empty page must not leave them behind a token that follows them."""
    stream = present_second()
    exactly_full = [active(1), event(2)]  # the page holds the whole listing: the next page is empty
    emitted = read_passes(stream, [(exactly_full, 1)] * 6, token=50)  # a change counter: no time proved
    assert sorted(emitted) == ["1-raised", "2-event"], emitted


def test_a_paged_open_window_that_boro_s_clock_left_behind_is_narrowed_and_its_pass_not_fed() -> None:
    """Changes keep arriving at the end of an open window paged in the present; the token of its first page reads
    them again, so they do not make the pass change. A state that cleared meanwhile does: once a reply proves a
    later Boro time, the window is read again as a bounded one and an open one after it, and the pass so far (which
    would deliver some changes made during it but not others) is not fed."""
    stream = present_second()
    listing = [active(1), event(2), event(3, at=SECOND + 2)]
    emitted, _ = read(stream, listing, 2, token=50)
    emitted_too, checking = read(stream, listing, 2, token=51)
    assert (checking.windows, checking.passes) == ((Window(SECOND),), 1), "checked, not narrowed, for an arrival"
    emitted_by_check, position = read(stream, listing[1:], 1, token=52)  # record 1 cleared: the check misses it
    assert emitted + emitted_too + emitted_by_check == []
    assert (position.windows, position.page, position.passes) == (
        (Window(SECOND, SECOND + 2), Window(SECOND + 2)),
        1,
        0,
    )


NAMED_TASK = 241555  # asked for by id
NEW_TASK = 241599  # listed by "*" only


Listings = Callable[[int, list[AlarmQuery]], tuple[list[DecodedRecord], list[DecodedRecord]]]


def read_both_calls(stream: Stream, listings: Listings) -> list[str]:
    """Feed the pages both calls of each read ask for, cut from what ``listings(read, queries)`` says Boro lists
    then (``"*"``, then by id), until the window is done; the transitions."""
    emitted: list[str] = []
    for number in range(1, 16):
        queries = stream.queries(stream.position)
        assert len(queries) == 2
        star, by_id = listings(number, queries)
        pages = [cut_page(queries[0], star, limit=LIMIT, token=50 + number)]
        pages.append(cut_page(queries[1], by_id, limit=LIMIT, token=50 + number))
        fed = stream.feed(stream.position, queries, pages, "oldest_first")
        stream.position = fed.position
        emitted += [f"{t.record.id}-{t.kind}" for t in fed.transitions]
        if not stream.position.windows:
            return emitted
    raise AssertionError(f"the window was not finished: {emitted}")


def test_a_listing_that_ended_on_a_short_page_is_not_gathered_while_the_other_goes_on() -> None:
    """Both calls of a paged pass (``"*"`` and the tasks by id) are asked for every page until neither is full.
    Changes made after the by-id listing's short page was read fill that page's room first, on a page already
    read: taking the ones that spill onto its next page would deliver them before the one that filled the room."""
    stream = present_second()
    stream.tasks = {NAMED_TASK}
    star = [decoded(n, type="event", active=None, trigger_time=SECOND) for n in (1, 2, 3)]
    star += [decoded(n, type="event", active=None, trigger_time=SECOND, task_id=NEW_TASK) for n in (4, 5, 6)]
    by_id = star[:3]
    later = [decoded(n, type="event", active=None, trigger_time=SECOND + 1) for n in (7, 8)]  # after page 2
    emitted = read_both_calls(
        stream, lambda number, _: (star, by_id) if number <= 2 else ([*star, *later], [*by_id, *later])
    )
    made_later = [name for name in emitted if name in ("7-event", "8-event")]
    assert made_later in ([], ["7-event", "8-event"]), f"a later change came before the one before it: {emitted}"
    assert {"1-event", "2-event", "3-event", "4-event", "5-event", "6-event"} <= set(emitted), emitted


def test_a_bounded_window_whose_pass_met_a_record_again_is_read_again() -> None:
    """Records arrived in a window's last second, Boro's present, while its pass was read: listed newest first
    they went in front and pushed a record onto the next page again. A state among them that then clears leaves
    the window and pulls every record behind it forward: one slips onto a page already read. No state of the pass
    can tell (the one that left was never listed), so the repeat itself has the window read again."""
    stream = crowded_second()
    before = [event(1), event(2), event(3), event(4)]
    arrived = [active(9, at=SECOND + 1), *before]  # a state raised in front, pushing record 2 onto page 2 again
    reads = [(before, 2), (arrived, 3), (before, 2)] + [(before, 2)] * 9  # then it cleared and left the window
    emitted = read_passes(stream, reads)
    assert sorted(emitted) == ["1-event", "2-event", "3-event", "4-event"], emitted


def test_a_task_seen_through_star_alone_is_asked_by_id_when_star_lost_a_task_during_the_pass() -> None:
    """A probe stopped while ``"*"`` was paged: its task's records left ``"*"``, and a record of a task ``"*"``
    alone shows slipped onto a page already read while a later one of the same task did not. The listing by id
    shows the sign (records of a task ``"*"`` listed that it no longer lists): the window is read again with that
    task asked for by id, and its records come in their order."""
    stream = present_second()
    stream.tasks = {NAMED_TASK}
    stopped = [decoded(n, type="event", active=None, trigger_time=SECOND) for n in (1, 2, 6)]
    alone = [decoded(n, type="event", active=None, trigger_time=SECOND, task_id=NEW_TASK) for n in (3, 4, 5)]
    every = sorted([*stopped, *alone], key=lambda item: item.record.id)

    def listings(number: int, queries: list[AlarmQuery]) -> tuple[list[DecodedRecord], list[DecodedRecord]]:
        star = every if number == 1 else alone  # the named task's probe stopped once page 1 was read
        return star, every if NEW_TASK in queries[-1].task_ids else stopped

    emitted = read_both_calls(stream, listings)
    made_by_the_new_task = [name for name in emitted if name in ("3-event", "4-event", "5-event")]
    assert made_by_the_new_task == ["3-event", "4-event", "5-event"], emitted
