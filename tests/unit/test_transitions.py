"""Transitions: raised, cleared and event, each once; a clear never arrives without its raise."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from borobridge.boro.queries import RejectedRecord
from borobridge.checkpoint import Checkpoint
from borobridge.transitions import Transition, TransitionMemory
from tests.support.records import decoded, record_bytes


def kinds(memory: TransitionMemory, *records: object) -> list[tuple[int, Transition, bool]]:
    fed = memory.feed(records)  # type: ignore[arg-type]
    return [(t.record.id, t.kind, t.synthetic) for t in fed]


def test_active_state_is_raised_once() -> None:
    memory = TransitionMemory()
    assert kinds(memory, decoded(1), decoded(1)) == [(1, Transition.RAISED, False)]
    assert kinds(memory, decoded(1)) == []


def test_clear_after_raise() -> None:
    memory = TransitionMemory()
    kinds(memory, decoded(1))
    assert kinds(memory, decoded(1, active=False)) == [(1, Transition.CLEARED, False)]
    assert memory.active == []


def test_state_first_seen_cleared_is_raised_then_cleared() -> None:
    assert kinds(TransitionMemory(), decoded(7, active=False)) == [
        (7, Transition.RAISED, True),
        (7, Transition.CLEARED, False),
    ]


def test_event_once_and_late_repeat_of_active_after_clear_is_dropped() -> None:
    memory = TransitionMemory()
    assert kinds(memory, decoded(2, type="event", active=None)) == [(2, Transition.EVENT, False)]
    assert kinds(memory, decoded(2, type="event", active=None)) == []
    kinds(memory, decoded(3), decoded(3, active=False))
    assert kinds(memory, decoded(3)) == []


def test_rollback_replays_identically() -> None:
    memory = TransitionMemory()
    kinds(memory, decoded(1))
    memory.commit()
    page = [decoded(1, active=False), decoded(2), decoded(3, type="event", active=None)]
    first = kinds(memory, *page)
    memory.rollback()
    assert memory.active == [1]
    assert kinds(memory, *page) == first


def test_a_commit_through_a_mark_keeps_only_what_was_fed_before_it() -> None:
    """A round fed while the one before it is still being delivered stays undoable when that one commits."""
    memory = TransitionMemory()
    delivered = [decoded(1), decoded(2, type="event", active=None)]
    kinds(memory, *delivered)
    mark = memory.mark()
    behind = [decoded(1, active=False), decoded(3)]
    first = kinds(memory, *behind)
    memory.commit(mark)
    memory.rollback()
    assert memory.active == [1]
    assert kinds(memory, *delivered) == []
    assert kinds(memory, *behind) == first
    memory.commit()
    memory.rollback()
    assert memory.active == [3]


def test_finished_ids_are_forgotten_by_boro_time_once_committed() -> None:
    memory = TransitionMemory()
    kinds_at = [memory.feed([decoded(i, type="event", active=None)], until=1000 + 100 * i) for i in range(5)]
    assert all(kinds_at)
    memory.forget_before(1300)
    assert memory.done == set(range(5)), "nothing committed yet: a rollback must still find every id"
    memory.commit()
    memory.forget_before(1300)
    assert memory.done == {3, 4}
    assert kinds(memory, decoded(4, type="event", active=None)) == []


def test_ids_finished_before_any_boro_time_was_known_are_dated_by_the_first_one() -> None:
    memory = TransitionMemory()
    memory.feed([decoded(1, type="event", active=None)], until=None)
    memory.commit()
    memory.forget_before(10**12)
    assert memory.done == {1}, "an id without a time is kept while no time is known"
    memory.feed([decoded(2, type="event", active=None)], until=5000)
    memory.commit()
    memory.forget_before(6000)
    assert memory.done == set()


def test_restored_memory_does_not_re_emit() -> None:
    before = TransitionMemory()
    kinds(before, decoded(1), decoded(2, active=False))
    before.commit()
    after = TransitionMemory(before.active, before.finished)
    assert kinds(after, decoded(1), decoded(2, active=False)) == []
    assert kinds(after, decoded(1, active=False)) == [(1, Transition.CLEARED, False)]


# A record's life: raised (maybe), then cleared (maybe); or one event. Boro may repeat any step.
lives = st.lists(st.tuples(st.integers(1, 30), st.sampled_from(["event", "raise", "clear"])), min_size=1, max_size=60)


@given(lives)
def test_any_sequence_gives_raise_before_clear_and_no_repeats(steps: list[tuple[int, str]]) -> None:
    memory = TransitionMemory()
    records = []
    for record_id, step in steps:
        if step == "event":
            records.append(decoded(1000 + record_id, type="event", active=None))
        else:
            records.append(decoded(record_id, active=step == "raise"))
    emitted = kinds(memory, *records)
    ids = [(record_id, kind) for record_id, kind, _ in emitted]
    assert len(ids) == len(set(ids))
    for record_id, kind in ids:
        if kind is Transition.CLEARED:
            assert ids.index((record_id, Transition.RAISED)) < ids.index((record_id, Transition.CLEARED))


# ---- dead letters ----------------------------------------------------------------------------------------------


def poison_record(record_id: int) -> RejectedRecord:
    return RejectedRecord(23, record_bytes(record_id, trigger_time=1590570529000), "trigger_time in milliseconds")


def test_a_poison_record_read_again_is_dead_lettered_once() -> None:
    memory = TransitionMemory()
    memory.feed([], until=1_000)
    assert memory.dead_letter([poison_record(5), poison_record(5)]) == [poison_record(5)]
    memory.commit()
    memory.feed([], until=1_010)
    assert memory.dead_letter([poison_record(5), poison_record(6)]) == [poison_record(6)]


def test_a_dead_letter_rolled_back_is_dead_lettered_again() -> None:
    memory = TransitionMemory()
    memory.feed([], until=1_000)
    memory.dead_letter([poison_record(5)])
    memory.rollback()
    assert memory.dead_letter([poison_record(5)]) == [poison_record(5)]


def test_a_restart_from_the_checkpoint_remembers_the_dead_letters() -> None:
    memory = TransitionMemory()
    memory.feed([], until=1_000)
    memory.dead_letter([poison_record(5)])
    memory.commit()
    saved = msgspec.json.decode(
        msgspec.json.encode(Checkpoint(stream="s", dead_letters=memory.dead_letters)), type=Checkpoint
    )
    restarted = TransitionMemory(saved.active, saved.finished, saved.dead_letters)
    restarted.feed([], until=1_000)
    assert restarted.dead_letter([poison_record(5)]) == []


def test_dead_letters_are_forgotten_by_boro_time() -> None:
    memory = TransitionMemory()
    memory.feed([], until=1_000)
    memory.dead_letter([poison_record(5)])
    memory.commit()
    memory.forget_before(5_000)
    assert memory.dead_letters == []


def test_an_old_checkpoint_without_dead_letters_loads() -> None:
    assert msgspec.json.decode(b'{"version": 2, "stream": "s"}', type=Checkpoint).dead_letters == []
