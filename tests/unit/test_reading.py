"""The reading strategy on its own: what to ask next, and where a stream stands after each answer."""

from __future__ import annotations

from typing import Any

import pytest

from borobridge import reading
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord
from borobridge.errors import BoroReplyError
from borobridge.reading import Position, Window
from tests.support.records import decoded

BASE = AlarmQuery(project_id=23, limit=3)
NOW = 1_790_000_000


def event(record_id: int, at: int) -> DecodedRecord:
    return decoded(record_id, type="event", active=None, trigger_time=at)


def page(records: list[DecodedRecord], token: float, **reply: Any) -> AlarmPage:
    return AlarmPage(
        query=BASE,
        records=records,
        rejected=[],
        update_token=token,
        current_page=reply.get("current_page", 1),
        total_pages=reply.get("total_pages", 1),
        limit_value=reply.get("limit_value", 3),
    )


def after(position: Position, *pages: AlarmPage, fresh: bool = True) -> Position:
    return reading.after_reply(position, reading.answer_of(list(pages)), fresh=fresh)


def test_a_page_is_full_by_the_replys_own_limit_and_page_count() -> None:
    two = [event(1, NOW), event(2, NOW)]
    assert page(two, 5, limit_value=2).full, "the server's limit, not the one asked for"
    assert page(two, 5, total_pages=2).full
    assert not page(two, 5).full
    assert not page([], 5, limit_value=0).full


def test_a_token_is_sent_one_lower_so_its_own_second_is_read_again() -> None:
    assert reading.next_query(Position(token=NOW), BASE).update_token == NOW - 1
    assert reading.next_query(Position(token=0), BASE).update_token == 0


def test_a_token_is_trusted_only_from_a_page_that_is_not_full() -> None:
    start = Position(token=40, floor=NOW, clock=NOW)
    followed = after(start, page([event(1, NOW + 1)], 41))
    assert (followed.token, followed.floor, followed.windows) == (41, NOW + 1, ())
    full = page([event(i, NOW + i) for i in range(3)], 99)
    behind = after(start, full)
    assert behind.token == 40, "a full page's token may skip what did not fit"
    assert behind.windows == (Window(NOW),), "the gap is read by period from the floor's second, inclusively"
    assert not reading.usable(start, reading.answer_of([full]))


def test_an_open_window_that_is_not_full_gives_the_token_to_continue_from() -> None:
    reading_gap = Position(token=40, floor=NOW, windows=(Window(NOW - 1),))
    query = reading.next_query(reading_gap, BASE)
    assert (query.period_from, query.period_to, query.update_token) == (NOW - 1, None, None)
    done = after(reading_gap, page([event(1, NOW + 5)], 77))
    assert (done.token, done.windows, done.floor) == (77, (), NOW + 5)


def test_a_bounded_window_moves_the_floor_but_never_the_token() -> None:
    position = Position(token=40, floor=NOW, windows=(Window(NOW, NOW + 10), Window(NOW + 10)))
    done = after(position, page([event(1, NOW + 3)], 99))
    assert (done.token, done.windows, done.floor) == (40, (Window(NOW + 10),), NOW + 9)


def test_full_windows_split_oldest_first_sharing_their_boundary_second() -> None:
    full = page([event(i, NOW + 20) for i in range(3)], 99)
    opened = after(Position(token=1, floor=NOW, windows=(Window(NOW),)), full)
    assert opened.windows == (Window(NOW, NOW + 20), Window(NOW + 20)), "split at the latest Boro time seen"
    at_its_end = after(Position(token=1, windows=(Window(NOW, NOW + 20), Window(NOW + 20))), full)
    assert at_its_end.windows == (Window(NOW, NOW + 19), Window(NOW + 19, NOW + 20), Window(NOW + 20)), (
        "changes in a window's last second split it off, not half of the window"
    )
    clears = page([decoded(i, active=False, trigger_time=NOW - 50) for i in range(3)], 99)
    halved = after(Position(token=1, windows=(Window(NOW, NOW + 20), Window(NOW + 20))), clears)
    assert halved.windows == (Window(NOW, NOW + 10), Window(NOW + 10, NOW + 20), Window(NOW + 20))


def test_a_crowded_second_is_paged_and_read_again_while_records_move() -> None:
    crowded = Position(token=1, windows=(Window(NOW, NOW + 1),))
    assert reading.paged(crowded)
    full = page([event(i, NOW) for i in range(3)], 9, total_pages=2)
    second = after(crowded, full)
    assert (second.page, second.windows[0]) == (2, Window(NOW, NOW + 1))
    again = after(second, page([event(9, NOW)], 9, current_page=2, total_pages=2), fresh=True)
    assert (again.page, again.passes) == (1, 1), "the pass found something new: records may have shifted"
    stable = after(after(again, full, fresh=False), page([event(9, NOW)], 9, current_page=2), fresh=False)
    assert stable.windows == (), "a pass that finds nothing new ends the window"
    assert reading.resumable(second).page == 1, "a crash restarts the paged read: its pages are fed only whole"


def test_a_crowded_present_second_is_paged_open_and_never_split_into_the_future() -> None:
    """A full open window whose records all sit in its first second, with Boro's clock not past it: a bounded
    window [s, s + 1] would be read before the second is over and the open window after it would start at s + 1,
    so a change made later in second s would be in neither. The open window is paged instead."""
    present = Position(token=40, floor=NOW, clock=NOW, windows=(Window(NOW),))
    full = page([event(i, NOW) for i in range(3)], 50, total_pages=2)
    paging = after(present, full, fresh=False)
    assert (paging.windows, paging.page) == ((Window(NOW),), 2), "no window reaching past Boro's clock"
    assert reading.paged(paging)
    check = after(paging, page([event(7, NOW)], 60, current_page=2, total_pages=2), fresh=True)
    assert (check.windows, check.page, check.passes) == ((Window(NOW),), 1, 1)
    assert reading.paged(check), "every pass of a paged open window is paged"
    again = after(check, page([], 65), fresh=True)  # the check missed a state: read the window again
    assert (again.windows, again.page, again.passes) == ((Window(NOW),), 1, 2)
    second = after(again, page([event(i, NOW) for i in range(3)], 70, total_pages=2), fresh=False)
    checked = after(second, page([event(7, NOW)], 80, current_page=2, total_pages=2), fresh=True)
    done = after(checked, page([], 90), fresh=False)
    assert done.windows == ()
    assert done.token == 70, "the token of the last full pass's first page: what changed during it is read again"


def test_a_crowded_present_second_after_a_closed_one_is_paged_open_not_split_and_paged_twice() -> None:
    """A full open window whose changes sit in its first two seconds, the second of them Boro's present: a split
    would page the present second as the end of a bounded window, then again as the open window after it."""
    present = Position(token=40, floor=NOW, clock=NOW + 1, windows=(Window(NOW),))
    full = page([event(1, NOW), event(2, NOW + 1), event(3, NOW + 1)], 50, total_pages=4)
    paging = after(present, full, fresh=False)
    assert (paging.windows, paging.page) == ((Window(NOW),), 2)
    later = page([event(1, NOW), event(2, NOW + 2), event(3, NOW + 2)], 50, total_pages=4)
    assert after(present, later, fresh=False).windows == (Window(NOW, NOW + 2), Window(NOW + 2)), (
        "changes past its second second: split as before, the two windows sharing Boro's present second"
    )


def test_a_paged_open_window_leaves_the_floor_at_its_first_second() -> None:
    """A reply proving a later Boro time while the window is paged (a second pass started past the second) must
    not move the floor past what the pass's first page covered: a change made later in the window's second, on a
    page already read, is the token's to deliver, and the sweep must not meet it first."""
    present = Position(token=NOW - 1, floor=NOW - 1, clock=NOW, windows=(Window(NOW),))
    first = page([event(i, NOW) for i in range(3)], NOW, total_pages=2)
    position = after(after(present, first), page([event(7, NOW)], NOW, current_page=2, total_pages=2), fresh=True)
    moved_on = page([event(7, NOW)], NOW + 1, current_page=2, total_pages=2)  # Boro's clock has moved on
    done = after(after(position, first, fresh=False), moved_on, fresh=False)
    assert (done.windows, done.token) == ((), NOW)
    assert done.floor == NOW, "every change before the window's second is delivered; within it, the token's"


def test_a_listing_whose_direction_nothing_tells_is_read_again_in_smaller_windows() -> None:
    """Two clears of one task beside one event: no pair of exact changes tells which way Boro listed them, and the
    task's order depends on it. The window is split until a second holds them, never guessed."""
    cleared = [decoded(1, active=False, trigger_time=NOW), decoded(3, active=False, trigger_time=NOW, name="Ttl")]
    listing = page([cleared[0], event(2, NOW), cleared[1]], 50, limit_value=5)
    reading_gap = Position(token=40, floor=NOW, clock=NOW + 8, windows=(Window(NOW - 1),))
    unsure = reading.answer_of([listing])
    assert not reading.usable(reading_gap, unsure)
    split = reading.after_reply(reading_gap, unsure, fresh=False)
    assert (split.windows, split.token) == ((Window(NOW - 1, NOW), Window(NOW + 1)), 40), (
        "split where it shows changes; Boro's clock is past that second, so the next window starts after it"
    )
    bounded = Position(token=40, floor=NOW, clock=NOW + 8, windows=(Window(NOW, NOW + 8),))
    assert not reading.usable(bounded, unsure)
    narrowed = reading.after_reply(bounded, unsure, fresh=False).windows
    assert narrowed == (Window(NOW, NOW + 1), Window(NOW + 2, NOW + 8)), "its changes' second is split off"
    one_second = Position(token=40, floor=NOW, clock=NOW + 8, windows=(Window(NOW, NOW + 1),))
    assert reading.usable(one_second, unsure), "within one second any order is Boro's order"
    assert reading.usable(reading_gap, reading.answer_of([listing], -2)), "a direction seen before decides"
    token_page = reading.answer_of([page(listing.records, 60, limit_value=5)])
    assert reading.after_reply(Position(token=40, floor=NOW), token_page, fresh=False).windows == (Window(NOW),)


def test_with_no_boro_time_known_the_gap_behind_a_newest_first_full_page_starts_at_the_beginning() -> None:
    """A full page listed newest first holds the newest changes of the gap, not its oldest: with no floor (every
    listing so far was empty), nothing says where the gap starts."""
    full = [event(3, NOW + 2), event(2, NOW + 1), event(1, NOW)]
    assert after(Position(token=8), page(full, 20)).windows == (Window(1),)
    oldest_first = after(Position(token=8), page(list(reversed(full)), 20))
    assert oldest_first.windows == (Window(NOW - 1),), "oldest first, the page starts the gap"


def test_paging_passes_are_bounded() -> None:
    last_check = 2 * reading.WINDOW_PASSES - 1  # every full pass of a window is followed by its check
    position = Position(token=1, windows=(Window(NOW, NOW + 1),), page=2, passes=last_check)
    assert after(position, page([event(1, NOW)], 9, current_page=2), fresh=True).windows == ()
    before_it = Position(token=1, windows=(Window(NOW, NOW + 1),), page=2, passes=last_check - 1)
    assert after(before_it, page([event(1, NOW)], 9, current_page=2), fresh=True).passes == last_check


def test_the_snapshot_takes_its_first_pages_token_and_the_latest_time_it_saw_as_floor() -> None:
    start = reading.first_position()
    assert reading.next_query(start, BASE).active_states_only
    first = after(start, page([decoded(1, trigger_time=NOW - 500)] * 3, 7, total_pages=2))
    assert (first.token, first.page, first.snapshot) == (7, 2, True)
    rest = page([decoded(2, trigger_time=NOW)], 8, current_page=2, total_pages=2)
    again = after(first, rest, fresh=False)
    assert (again.snapshot, again.page, again.passes) == (True, 1, 1), "the first pass found states: read again"
    last = after(after(again, page([decoded(1, trigger_time=NOW - 500)] * 3, 7, total_pages=2), fresh=False), rest)
    assert (last.snapshot, last.token, last.floor) == (True, 7, None), "states moved in the second pass"
    settled = after(after(last, page([decoded(1, trigger_time=NOW - 500)] * 3, 8), fresh=False), rest, fresh=False)
    assert (settled.snapshot, settled.token, settled.floor) == (False, 7, NOW)


def test_first_starts_since_and_all_read_history_beside_the_live_lane() -> None:
    assert reading.backfill_position("since", NOW) == Position(windows=(Window(NOW),))
    assert reading.backfill_position("all", None) == Position(windows=(Window(1),))
    assert reading.backfill_position("now", None) is None
    assert reading.first_position().snapshot, "every mode starts its live lane at once"


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        (1_590_570_529_000, "not a plausible token"),
        (-1, "not a plausible token"),
        (NOW + 3 * 365 * 86_400, "ahead of the latest Boro time seen"),
    ],
)
def test_implausible_tokens_are_refused_naming_the_value(token: int, fragment: str) -> None:
    with pytest.raises(BoroReplyError, match=fragment) as refused:
        reading.check_reply(Position(token=1, clock=NOW), page([event(1, NOW)], token))
    assert str(token) in str(refused.value)


def test_counters_and_clock_tokens_are_plausible() -> None:
    reading.check_reply(Position(token=1, clock=NOW), page([], 2))
    reading.check_reply(Position(token=NOW, clock=NOW), page([], NOW + 3600))


def test_a_listings_direction_is_read_from_exact_change_times() -> None:
    newest_first = [event(3, NOW + 2), decoded(9, active=False, trigger_time=NOW - 50), event(1, NOW)]
    assert [r.record.id for r in reading.in_change_order(newest_first)] == [1, 9, 3]
    cleared_only = [decoded(9, active=False, trigger_time=NOW), decoded(8, active=False, trigger_time=NOW)]
    assert [r.record.id for r in reading.in_change_order(cleared_only)] == [9, 8], "nothing exact: the hint"
    assert [r.record.id for r in reading.in_change_order(cleared_only, -3)] == [8, 9], "what earlier replies showed"
    mixed = [event(5, NOW + 3), event(4, NOW + 2), event(1, NOW), event(2, NOW + 1)]  # a newest-first page, repeats
    assert [r.record.id for r in reading.in_change_order(mixed)] == [1, 2, 4, 5]


def test_within_one_second_the_ids_of_new_records_tell_the_direction() -> None:
    """A newest-first reply whose exact changes all share one second, with a clear at its top: the ids the records
    got when they were created tell the direction where their times cannot, so the clear comes last."""
    newest_first = [decoded(2, active=False, trigger_time=NOW - 20), event(14, NOW), event(13, NOW), event(11, NOW)]
    assert [r.record.id for r in reading.in_change_order(newest_first)] == [11, 13, 14, 2]
    assert reading.direction(newest_first) < 0


def test_repeats_in_front_of_one_listing_do_not_turn_the_direction_of_the_answer() -> None:
    """Three old records repeated in front of the call by id (oldest first, before its newest-first listing) outvote
    its own two events; the ``"*"`` call of the same reply, a listing of the same kind, tells the direction."""
    selector = page([event(30, NOW + 6), event(28, NOW + 5), event(27, NOW + 5), event(26, NOW + 4)], 50, limit_value=9)
    repeats = [decoded(i, type="event", active=None, trigger_time=NOW, task_id=7) for i in (1, 2, 3)]
    cleared = decoded(19, active=False, trigger_time=NOW + 3, task_id=7)
    mine = [decoded(i, type="event", active=None, trigger_time=NOW + 4, task_id=7) for i in (15, 13)]
    by_id = page([*repeats, cleared, *mine], 50, limit_value=9)
    answer = reading.answer_of([selector, by_id], "oldest_first", by_id=[7])
    assert [r.record.id for r in answer.records if r.record.task_id == 7 and r.record.id > 3] == [13, 15, 19], (
        "the clear, listed first by a newest-first listing, is the task's latest change"
    )
    alone = reading.answer_of([by_id], -4).records  # one listing: what earlier replies of its kind showed counts
    assert [r.record.id for r in alone if r.record.task_id == 7 and r.record.id > 3] == [13, 15, 19]


def test_an_open_windows_check_lists_every_active_state() -> None:
    """A state raised before an open window that clears while the window is paged joins it in Boro's present; the
    check must see whether such a state is still active, so it is not limited to the window."""
    checking = Position(token=40, floor=NOW, clock=NOW, windows=(Window(NOW),), passes=1)
    query = reading.next_query(checking, BASE)
    assert (query.active_states_only, query.period_from, query.period_to) == (True, None, None)
    bounded = reading.next_query(reading.Position(clock=NOW, windows=(Window(NOW - 1, NOW),), passes=1), BASE)
    assert (bounded.period_from, bounded.period_to) == (NOW - 1, NOW), "a bounded window's states cannot leave it"
    paging = Position(token=40, floor=NOW, clock=NOW, windows=(Window(NOW),), page=3)
    last = reading.answer_of([page([event(9, NOW + 1)], 50, current_page=3, total_pages=3)])
    assert reading.moved_on(paging, last, NOW), "a reply proved Boro's clock past the pass's first page"
    assert not reading.moved_on(paging, reading.answer_of([page([event(9, NOW)], 50)]), NOW)


def test_the_sweep_reads_up_to_the_floor_then_on_to_boros_present() -> None:
    """A task ``"*"`` left out before the bridge saw it may have changed after the last Boro time any reply proved
    (a quiet stream with sequence tokens proves none): only an open window from the floor on reaches it."""
    sweep = reading.sweep_position(Position(token=5, floor=NOW, clock=NOW + 3), 900)
    assert sweep is not None
    assert sweep.windows == (Window(NOW - 900, NOW - 1), Window(NOW - 1))
    assert sweep.clock == NOW + 3


def test_a_stream_that_proved_no_boro_time_is_swept_from_the_servers() -> None:
    """Every probe of the project stopped before the bridge saw any of its tasks: no reply of its own ever proved
    a Boro time, so the sweep reaches back from the latest time another stream of the server proved."""
    assert reading.sweep_position(Position(token=5), 900) is None, "no Boro time known anywhere yet"
    sweep = reading.sweep_position(Position(token=5), 900, boro_clock=NOW)
    assert sweep is not None
    assert (sweep.windows, sweep.clock) == ((Window(NOW - 900),), NOW)


def test_a_floor_far_behind_boros_clock_is_swept_by_one_open_window() -> None:
    sweep = reading.sweep_position(Position(token=5, floor=NOW - 5000, clock=NOW - 5000), 900, boro_clock=NOW)
    assert sweep is not None
    assert sweep.windows == (Window(NOW - 900),), "the sweep reaches back its window from the latest Boro time"


def test_only_a_task_the_token_path_never_asked_for_is_missed_after_the_floor() -> None:
    """What the open window finds of a task the token path asks for by id is the token path's to deliver later
    (a state that cleared while the sweep listed it): not a miss. Before the floor every find is one."""
    sweep = reading.sweep_position(Position(token=5, floor=NOW, clock=NOW), 900)
    assert sweep is not None
    assert reading.missed(sweep, sweep, 7, covered={7}), "before the floor"
    tail = Position(clock=NOW, windows=sweep.windows[1:])
    assert not reading.missed(tail, sweep, 7, covered={7})
    assert reading.missed(tail, sweep, 8, covered={7}), "a task '*' left out before it was seen"
    split = Position(clock=NOW + 1, windows=(Window(NOW - 1, NOW + 1), Window(NOW + 1)))  # paged in the present
    assert not reading.missed(split, sweep, 7, covered={7}), "a window the open one was split into"
