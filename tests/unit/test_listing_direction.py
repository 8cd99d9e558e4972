"""The order Boro lists each kind of reply in, as the bridge has seen it, outlives a restart.

Two cleared states of one task in Boro's present second carry no change time the bridge can order them by: only
the listing's direction can. What earlier listings showed is kept in the checkpoint, so a restarted bridge orders
them as Boro does rather than by ``boro.reply_order``.
"""

from __future__ import annotations

import msgspec

from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord
from borobridge.checkpoint import Checkpoint
from borobridge.reading import Position, Window
from borobridge.streams import Stream, open_stream
from borobridge.transitions import TransitionMemory
from tests.support.pages import cut_page
from tests.support.records import decoded
from tests.support.settings import bridge_settings

SECOND = 1_790_000_000
BASE = AlarmQuery(project_id=23, limit=100)


def feed(stream: Stream, records: list[DecodedRecord]) -> list[str]:
    """Feed one page, not full, listing ``records``, as the answer to each call of the stream's next read."""
    queries = stream.queries(stream.position)
    pages = [
        AlarmPage(
            query=query, records=records, rejected=[], update_token=9, current_page=1, total_pages=1, limit_value=100
        )
        for query in queries
    ]
    fed = stream.feed(stream.position, queries, pages, "oldest_first")
    stream.position = fed.position
    return [f"{t.record.id}-{t.kind}" for t in fed.transitions]


def test_a_restarted_stream_orders_what_only_the_listing_direction_tells_as_before() -> None:
    stream = Stream(
        "s", BASE, TransitionMemory(), Position(token=7, clock=SECOND + 100, windows=(Window(SECOND, SECOND + 10),))
    )
    newest_first = [
        decoded(5, type="event", active=None, trigger_time=SECOND + 8),
        decoded(4, type="event", active=None, trigger_time=SECOND + 3),
    ]
    assert feed(stream, newest_first) == ["4-event", "5-event"]
    saved = msgspec.json.decode(msgspec.json.encode(stream.checkpoint()), type=Checkpoint)
    options = bridge_settings()
    restarted = open_stream("boro-test", 23, options.boro, saved, options.first_start)
    assert_two_clears_listed_newest_first_come_oldest_first(restarted)


def assert_two_clears_listed_newest_first_come_oldest_first(stream: Stream) -> None:
    """Feed two clears of one task in Boro's present, listed newest first: only the direction can order them."""
    stream.position = Position(token=7, clock=SECOND + 100, windows=(Window(SECOND + 100),))
    cleared_later, cleared_first = (
        decoded(2, trigger_time=SECOND + 99, active=False),
        decoded(1, trigger_time=SECOND + 98, active=False),
    )
    emitted = feed(stream, [cleared_later, cleared_first])
    assert emitted.index("1-cleared") < emitted.index("2-cleared"), emitted


def test_a_direction_only_a_paged_read_whole_shows_is_remembered() -> None:
    """With pages of one record no page shows a direction; the pages of a paged read together do."""
    stream = Stream(
        "s",
        AlarmQuery(project_id=23, limit=1),
        TransitionMemory(),
        Position(token=7, clock=SECOND + 100, windows=(Window(SECOND, SECOND + 1),)),
    )
    newest_first = [decoded(record_id, type="event", active=None, trigger_time=SECOND) for record_id in (6, 5, 4)]
    emitted: list[str] = []
    for _ in range(10):
        [query] = stream.queries(stream.position)
        page = cut_page(query, newest_first, limit=1, token=9)
        fed = stream.feed(stream.position, [query], [page], "oldest_first")
        stream.position = fed.position
        emitted += [f"{t.record.id}-{t.kind}" for t in fed.transitions]
        if not stream.position.windows:
            break
    assert emitted == ["4-event", "5-event", "6-event"], "the pages together are put in Boro's order"
    assert_two_clears_listed_newest_first_come_oldest_first(stream)


def test_repeats_a_server_puts_in_front_do_not_turn_a_listing() -> None:
    """A newest-first token reply with three records delivered before put in front, oldest first: the records new
    to the stream tell the direction."""
    stream = Stream("s", BASE, TransitionMemory(), Position(token=7, clock=SECOND + 10))
    repeats = [
        decoded(record_id, type="event", active=None, trigger_time=SECOND + record_id) for record_id in (1, 2, 3)
    ]
    assert feed(stream, list(reversed(repeats))) == ["1-event", "2-event", "3-event"]
    cleared_last = decoded(9, trigger_time=SECOND - 10, active=False)
    newest_first = [
        cleared_last,
        decoded(5, type="event", active=None, trigger_time=SECOND + 6),
        decoded(4, type="event", active=None, trigger_time=SECOND + 6),
    ]
    assert feed(stream, [*repeats, *newest_first]) == ["4-event", "5-event", "9-raised", "9-cleared"]
