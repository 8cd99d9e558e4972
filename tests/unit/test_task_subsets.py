"""A crowded second whose passes never settle is read by task subsets: each subset's tasks in one reply.

Paging a second with more than a page is exact once a pass settles. While states keep clearing during every pass,
the second is read again by id for groups of the tasks the passes met, each group small enough for one reply: a
reply that is not full lists its tasks' records at one moment, so none can slip between its pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from borobridge import reading
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord
from borobridge.reading import Position, Window
from borobridge.streams import Stream
from borobridge.transitions import AlarmTransition, TransitionMemory
from tests.support.pages import cut_page
from tests.support.records import decoded

SECOND = 1_790_000_000
PRESENT = SECOND + 5  # Boro's clock, past the crowded second: nothing joins it any more
LIMIT = 4
BASE = AlarmQuery(project_id=23, limit=LIMIT)


@dataclass
class ChurningBoro:
    """One crowded second of Boro's records (oldest first, by id within the second); once the first page of a
    pass over ``"*"`` is answered, the first state on it clears and leaves the second."""

    records: list[DecodedRecord]
    asked: list[AlarmQuery] = field(default_factory=list)

    def answer(self, query: AlarmQuery) -> AlarmPage:
        self.asked.append(query)
        listing = [item for item in self.records if self._matches(item, query)]
        page = cut_page(query, listing, limit=LIMIT, token=PRESENT)
        if query.task_ids == "*" and query.page == 1 and not query.active_states_only:
            self._clear(next((item for item in page.records if item.record.active is True), None))
        return page

    def _clear(self, item: DecodedRecord | None) -> None:
        if item is not None:
            record = item.record
            cleared = decoded(record.id, task_id=record.task_id, trigger_time=record.trigger_time, active=False)
            self.records = [cleared if other is item else other for other in self.records]

    @staticmethod
    def _matches(item: DecodedRecord, query: AlarmQuery) -> bool:
        record = item.record
        changed = PRESENT if record.active is False else record.trigger_time  # a cleared state moved to the present
        in_window = query.period_from is None or query.period_from <= changed <= (query.period_to or PRESENT)
        asked = query.task_ids == "*" or (isinstance(query.task_ids, list) and record.task_id in query.task_ids)
        return in_window and asked and (not query.active_states_only or record.active is True)


def state(record_id: int, task_id: int) -> DecodedRecord:
    return decoded(record_id, task_id=task_id, trigger_time=SECOND)


def event(record_id: int, task_id: int) -> DecodedRecord:
    return decoded(record_id, task_id=task_id, type="event", active=None, trigger_time=SECOND)


def read_window(stream: Stream, boro: ChurningBoro, reads: int = 60) -> list[AlarmTransition]:
    """Read until the crowded second is done; the transitions fed, in feeding order."""
    fed: list[AlarmTransition] = []
    for _ in range(reads):
        queries = stream.queries(stream.position)
        pages = [boro.answer(query) for query in queries]
        answer = stream.feed(stream.position, queries, pages, "oldest_first")
        stream.position = answer.position
        fed += answer.transitions
        if not stream.position.windows:
            return fed
    raise AssertionError(f"the crowded second was not read in {reads} reads")


def crowded_second() -> Stream:
    window = Window(SECOND, SECOND + 1)
    return Stream("s", BASE, TransitionMemory(), Position(token=1, clock=PRESENT, windows=(window,)))


def churning_boro() -> ChurningBoro:
    """Ten records of six tasks in one second, and enough states for every pass to see one clear."""
    records = [
        state(1, 101), state(2, 102), state(3, 103), event(4, 104), state(5, 101),
        event(6, 105), event(7, 104), state(8, 106), event(9, 105), event(10, 102),
    ]  # fmt: skip
    return ChurningBoro(records)


def test_a_crowded_second_that_never_settles_is_read_by_task_subsets_each_in_one_reply() -> None:
    boro = churning_boro()
    stream = crowded_second()
    fed = read_window(stream, boro)
    by_id = [query for query in boro.asked if isinstance(query.task_ids, list)]
    assert by_id, "the passes never settled: the second is read again by id, for groups of the tasks they met"
    assert all(query.period_to == SECOND + 1 and not query.active_states_only for query in by_id)
    assert sorted(task for query in by_id for task in query.task_ids) == [101, 102, 103, 104, 105, 106]
    assert all(page_holds_all(boro, query) for query in by_id), "each subset's records fit one reply"
    remaining = {item.record.id for item in boro.records if item.record.active is not False}
    assert {transition.record.id for transition in fed} == remaining, "the second's records, each once"
    assert len(fed) == len(remaining)
    for task in {transition.record.task_id for transition in fed}:
        ids = [transition.record.id for transition in fed if transition.record.task_id == task]
        assert ids == sorted(ids), f"task {task}'s records in Boro's order"


def page_holds_all(boro: ChurningBoro, query: AlarmQuery) -> bool:
    return not boro.answer(query).full


def test_task_subsets_fill_a_page_short_of_full() -> None:
    assert reading.task_subsets({1: 2, 2: 1, 3: 3, 4: 0}, room=4) == ((1, 2), (3, 4))
    assert reading.task_subsets({1: 9, 2: 1}, room=4) == ((1,), (2,)), "a task with more than a page stands alone"
    assert reading.task_subsets({}, room=4) == ()


def test_a_subset_whose_reply_is_full_is_halved_and_one_task_is_paged_alone() -> None:
    window = Window(SECOND, SECOND + 1)
    grouped = Position(token=1, clock=PRESENT, windows=(window,), subsets=((1, 2, 3), (4,)))
    full = reading.answer_of([cut_page(BASE, [event(1, 1)] * LIMIT, limit=LIMIT, token=PRESENT)])
    halved = reading.after_reply(grouped, full, fresh=False)
    assert (halved.subsets, halved.page) == (((1,), (2, 3), (4,)), 1)
    alone = reading.after_reply(halved, full, fresh=False)
    assert (alone.subsets[0], alone.page) == ((1,), 2), "one task with more than a page: its pages are read"
    assert reading.next_query(alone, BASE).task_ids == [1]
    last = msgspec.structs.replace(halved, subsets=((4,),))
    done = reading.after_reply(last, reading.answer_of([cut_page(BASE, [], limit=LIMIT, token=PRESENT)]), fresh=False)
    assert (done.windows, done.subsets, done.floor) == ((), (), SECOND), "the last subset read: the window is done"


def test_a_window_read_by_task_subsets_is_checkpointed_to_start_over() -> None:
    position = Position(token=1, clock=PRESENT, windows=(Window(SECOND, SECOND + 1),), subsets=((1,), (2,)))
    assert reading.resumable(position).subsets == ()
    assert reading.resumable(position).windows == position.windows
