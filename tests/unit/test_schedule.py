"""Which reads a round makes (:class:`borobridge.schedule.ReadPlan`), on a clock the test moves.

A new stream's live lane waits for its history through its first cycle, failed cycles stretch that head start up to
a cap, the history lanes share a budget per round and take turns, a failed read rests until the next cycle, the
sweep starts on its own clock, and a held stream is not read until its backoff expires.
"""

from __future__ import annotations

from typing import Final

from borobridge.checkpoint import Checkpoint
from borobridge.held_streams import HeldStreams
from borobridge.reading import Position, Window
from borobridge.schedule import BACKFILL_READS_PER_ROUND, HEAD_START_CYCLES, ReadPlan
from borobridge.settings import ReconcileSettings, Settings
from borobridge.streams import Stream, open_stream
from tests.support.clock import ManualClock
from tests.support.settings import bridge_settings

POLL_INTERVAL: Final = 2.0
SWEEP_INTERVAL: Final = 300.0
BOUND: Final = 1_700_000_000  # where a stream's history lane meets its live lane (Boro time)
HISTORY: Final = Position(windows=(Window(1, BOUND),))  # a history lane bounded by its snapshot
LIVE: Final = Position(floor=BOUND, clock=BOUND, windows=(Window(BOUND - 1),))  # the live lane after its snapshot
FOLLOWING: Final = Position(token=5, floor=BOUND, clock=BOUND)  # a live lane following tokens


def settings(history: str = "beside") -> Settings:
    return bridge_settings(BOROBRIDGE_FIRST_START__HISTORY=history)


def new_stream(project_id: int, options: Settings, saved: Checkpoint | None = None) -> Stream:
    return open_stream("boro-test", project_id, options.boro, saved, options.first_start)


def past_its_snapshot(stream: Stream) -> Stream:
    """The stream as its snapshot read leaves it: a bounded history, the live lane reading on from the bound."""
    stream.position, stream.backfill = LIVE, HISTORY
    return stream


def plan_of(*streams: Stream, clock: ManualClock | None = None) -> ReadPlan:
    clock = clock or ManualClock()
    held = HeldStreams(1.0, 8.0, clock)
    reconcile = ReconcileSettings(interval=SWEEP_INTERVAL)
    plan = ReadPlan(poll_interval=POLL_INTERVAL, reconcile=reconcile, held=held, clock=clock)
    for stream in streams:
        plan.add(stream)
    return plan


def reads_of(plan: ReadPlan) -> list[tuple[int, str]]:
    return [(read.stream.base.project_id, read.purpose) for read in plan.due()]


def cycles(plan: ReadPlan, clock: ManualClock, count: int, *, failed: bool) -> None:
    for _ in range(count):
        plan.begin_cycle(clock())
        plan.end_cycle(failed=failed)


def test_a_new_streams_live_lane_waits_for_its_history_through_its_first_cycle_only() -> None:
    clock = ManualClock()
    stream = new_stream(23, settings())
    plan = plan_of(stream, clock=clock)
    past_its_snapshot(stream)
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(23, "backfill")]
    plan.end_cycle(failed=False)
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(23, "backfill"), (23, "poll")]


def test_failed_cycles_stretch_the_head_start_up_to_its_cap() -> None:
    clock = ManualClock()
    stream = new_stream(23, settings())
    plan = plan_of(stream, clock=clock)
    past_its_snapshot(stream)
    cycles(plan, clock, HEAD_START_CYCLES - 1, failed=True)
    plan.begin_cycle(clock())
    assert (23, "poll") not in reads_of(plan), "a failed cycle ended the head start"
    plan.end_cycle(failed=True)
    plan.begin_cycle(clock())
    assert (23, "poll") in reads_of(plan), f"the head start outlasted {HEAD_START_CYCLES} failed cycles"


def test_a_failed_history_read_stretches_the_head_start_and_rests_until_the_next_cycle() -> None:
    clock = ManualClock()
    stream = new_stream(23, settings())
    plan = plan_of(stream, clock=clock)
    past_its_snapshot(stream)
    plan.begin_cycle(clock())
    [history] = plan.due()
    plan.failed(history)
    assert plan.due() == [], "a failed history read was tried again in the same cycle"
    plan.end_cycle(failed=False)
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(23, "backfill")], "the head start ended although the stream's read failed"


def test_the_history_lanes_share_a_budget_per_round_taking_turns() -> None:
    streams = [past_its_snapshot(new_stream(project, settings())) for project in range(1, 7)]
    clock = ManualClock()
    plan = plan_of(*streams, clock=clock)
    plan.begin_cycle(clock())
    first = [project for project, purpose in reads_of(plan) if purpose == "backfill"]
    second = [project for project, purpose in reads_of(plan) if purpose == "backfill"]
    assert len(first) == BACKFILL_READS_PER_ROUND
    assert first == [1, 2, 3, 4]
    assert second[:2] == [5, 6], "the streams left out of a round do not read first in the next"


def test_history_reads_come_before_the_live_reads_of_a_round() -> None:
    clock = ManualClock()
    reading_history = past_its_snapshot(new_stream(23, settings()))
    live = new_stream(24, settings())
    live.position, live.backfill = FOLLOWING, None
    plan = plan_of(live, reading_history, clock=clock)
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(23, "backfill"), (24, "poll")]


def test_a_stream_resumed_past_its_snapshot_waits_for_its_history_whatever_the_setting() -> None:
    options = settings(history="first")
    saved = Checkpoint(stream="boro-test/23", update_token=5, position=LIVE, backfill=HISTORY)
    stream = new_stream(23, options, saved)
    clock = ManualClock()
    plan = plan_of(stream, clock=clock)
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(23, "backfill")]


def test_a_failed_live_read_rests_until_the_next_cycle_while_its_history_goes_on() -> None:
    clock = ManualClock()
    stream = past_its_snapshot(new_stream(23, settings()))
    plan = plan_of(stream, clock=clock)
    cycles(plan, clock, 1, failed=False)  # the head start is over
    plan.begin_cycle(clock())
    poll = next(read for read in plan.due() if read.purpose == "poll")
    plan.failed(poll)
    assert reads_of(plan) == [(23, "backfill")]
    plan.end_cycle(failed=False)
    plan.begin_cycle(clock())
    assert (23, "poll") in reads_of(plan)


def test_a_stream_is_read_again_at_once_while_busy_and_after_the_poll_interval_otherwise() -> None:
    clock = ManualClock()
    stream = new_stream(23, settings(history="first"))
    stream.position, stream.backfill = LIVE, None
    plan = plan_of(stream, clock=clock)
    plan.begin_cycle(clock())
    plan.polled(stream)
    assert reads_of(plan) == [(23, "poll")], "a period read under way waited"
    stream.position = FOLLOWING
    plan.polled(stream)
    assert plan.due() == []
    assert plan.until_due(clock()) == POLL_INTERVAL
    clock.now += POLL_INTERVAL
    assert reads_of(plan) == [(23, "poll")]


def test_the_sweep_starts_every_interval_once_the_stream_follows_tokens() -> None:
    clock = ManualClock()
    stream = new_stream(23, settings(history="first"))
    stream.position, stream.backfill = FOLLOWING, None
    plan = plan_of(stream, clock=clock)
    plan.begin_cycle(clock())
    plan.polled(stream)
    assert plan.due() == [], "a sweep started before its interval"
    clock.now += SWEEP_INTERVAL
    assert reads_of(plan) == [(23, "poll"), (23, "sweep")]


def test_a_held_stream_is_not_read_until_its_backoff_expires() -> None:
    clock = ManualClock()
    held = past_its_snapshot(new_stream(23, settings()))
    other = new_stream(24, settings())
    other.position, other.backfill = FOLLOWING, None
    plan = plan_of(held, other, clock=clock)
    cycles(plan, clock, 1, failed=False)
    plan.begin_cycle(clock())
    delay = plan.hold(held)
    plan.read_again()
    assert reads_of(plan) == [(24, "poll")]
    assert plan.until_due(clock()) == POLL_INTERVAL, "a held stream's unread history made the next cycle start at once"
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(24, "poll")]
    clock.now += delay
    plan.begin_cycle(clock())
    assert reads_of(plan) == [(23, "backfill"), (23, "poll"), (24, "poll")]
    assert plan.release(held.id)
    assert not plan.release(held.id)
