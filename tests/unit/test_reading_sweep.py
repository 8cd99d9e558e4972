"""The reconciliation sweep's count of what the token path missed: a task the stream's own reads learn while a
sweep is under way is theirs to read, so the sweep finding its changes first counts no miss."""

from __future__ import annotations

from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord
from borobridge.reading import Position, Window
from borobridge.streams import Stream
from borobridge.transitions import TransitionMemory
from tests.support.records import decoded

NOW = 1_790_000_000
BASE = AlarmQuery(project_id=23, limit=5)


def answer(
    stream: Stream, position: Position, records: list[DecodedRecord], lane: str, *, polled: bool = True
) -> tuple[Position, list[str]]:
    """Feed one page, not full, as the answer to every call the stream makes at ``position``; the sweep's
    transitions counted as missed (``polled``: the stream's own read answered in the same round)."""
    queries = stream.queries(position, lane)
    pages = [
        AlarmPage(
            query=query,
            records=records,
            rejected=[],
            update_token=50,
            current_page=1,
            total_pages=1,
            limit_value=5,
        )
        for query in queries
    ]
    fed = stream.feed(position, queries, pages, "oldest_first", lane)
    assert fed.transitions or not records, "every answer here yields a transition"
    found = stream.missed(position, fed.transitions, polled=polled) if lane == "sweep" else []
    return fed.position, [f"{t.record.id}-{t.kind}" for t in found]


def test_a_task_the_token_path_learns_during_a_sweep_is_no_miss_when_the_sweep_finds_it_first() -> None:
    stream = Stream("s", BASE, TransitionMemory(), Position(token=40, floor=NOW, clock=NOW))
    sweep = stream.start_sweep(900, None)
    assert sweep is not None
    sweep, missed = answer(stream, sweep, [], "sweep")
    assert sweep.windows == (Window(NOW - 1),), "the sweep reads past the floor now"
    raised = decoded(1, task_id=7, trigger_time=NOW + 1)
    stream.position, _ = answer(stream, stream.position, [raised], "poll")  # "*" shows task 7 for the first time
    assert 7 in stream.tasks
    cleared = decoded(1, task_id=7, trigger_time=NOW + 1, active=False)
    _, missed = answer(stream, sweep, [cleared], "sweep")  # the clear, before the token path reads it
    assert missed == [], "the token path asks for task 7 by id from now on: the clear is its, read early"
    hidden = decoded(2, task_id=8, type="event", active=None, trigger_time=NOW + 1)
    _, missed = answer(stream, sweep, [hidden], "sweep")
    assert missed == ["2-event"], 'a task "*" left out that the bridge never saw is still a miss'


def test_a_find_past_the_floor_is_no_miss_in_a_round_where_the_stream_s_own_read_failed() -> None:
    """The stream's own read failed in the round (an error item): a task's first change the sweep's ``"*"`` finds
    past the floor is delivered, but nothing says the token path would not have read it next."""
    stream = Stream("s", BASE, TransitionMemory(), Position(token=40, floor=NOW, clock=NOW))
    sweep = stream.start_sweep(900, None)
    assert sweep is not None
    sweep, _ = answer(stream, sweep, [], "sweep")
    first = decoded(3, task_id=9, type="event", active=None, trigger_time=NOW + 1)
    _, missed = answer(stream, sweep, [first], "sweep", polled=False)
    assert missed == []
