"""First start ``now``: the snapshot of active states raises each one once, whatever happens while it is read.

Its pages are read in pages of three while states clear (a state that clears leaves the active listing, and the
states behind it move a place forward, maybe onto a page already read), while some calls fail, and while the
process dies around some deliveries. Every state active at the start is raised exactly once, and every clear read
later follows its raise. Changes made shortly before the start may come too (a period read behind a full token
page starts at the latest Boro time the snapshot proved), each once and in order.
"""

from __future__ import annotations

from typing import Final

import httpx
import pytest

from borobridge.boro.client import BoroClient
from borobridge.pipeline import Pipeline
from borobridge.simulator import Faults, Personality, Simulator, as_mock_transport_handler
from tests.support.clock import ManualClock
from tests.support.crashing_sink import Crash, DurableSink
from tests.support.expectations import assert_exactly_once_in_order, expected_ids
from tests.support.settings import bridge_settings

HISTORY_S: Final = 120  # seconds of the world before the first start
CYCLES: Final = 80  # at most this many poll cycles for the snapshot and the clears after it
CLEARING: Final = Personality(moving_records=0.5)  # half the listings without a token see a state clear
FAILING: Final = Faults(error_item=0.15, http_5xx=0.1, retry_after=0.0)


def world_with_active_states(seed: int) -> tuple[Simulator, ManualClock]:
    clock = ManualClock(1_790_000_000.0)
    sim = Simulator(seed=seed, projects=1, clock=clock, rate_per_second=4.0, personality=CLEARING, faults=FAILING)
    for _ in range(HISTORY_S):
        clock.now += 1.0
        sim.advance()
    return sim, clock


async def no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize("seed", range(4))
async def test_the_snapshot_raises_each_active_state_once_while_states_clear_and_calls_fail(seed: int) -> None:
    sim, clock = world_with_active_states(seed)
    raised_at_start = {f"{stored.alarm['id']}-raised" for stored in sim.records() if stored.alarm.get("active") is True}
    start = sim.changes()[-1].seq
    settings = bridge_settings(
        BOROBRIDGE_FIRST_START__MODE="now",
        BOROBRIDGE_BORO__PAGE_SIZE="3",
        BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF="0.001",
        BOROBRIDGE_BORO__RETRY__MAX_BACKOFF="0.001",
    )
    committer = DurableSink()
    committer.crash_at = {2, 3, 6}
    async with httpx.AsyncClient(transport=httpx.MockTransport(as_mock_transport_handler(sim))) as http:
        client = BoroClient(http, settings.boro, sleep=no_sleep)
        pipeline: Pipeline | None = None
        for _ in range(CYCLES):
            clock.now += 1.0
            cleared_since = {f"{change.record_id}-cleared" for change in sim.changes(start)}
            if {event["id"] for event in committer.events} >= raised_at_start | cleared_since:
                break
            if pipeline is None:
                pipeline = Pipeline(client, committer, settings, server_name="boro-test", clock=clock)
                await pipeline.restore()
            try:
                await pipeline.poll_once()
            except Crash:
                pipeline = None
    cleared_since = {f"{change.record_id}-cleared" for change in sim.changes(start)}
    assert cleared_since, "no state cleared while the bridge read: nothing was tested"
    assert committer.deliveries > max(committer.crash_at), "the planned crashes did not all happen"
    assert len(raised_at_start) > 3 * 3, "the snapshot fits a few pages: nothing was paged"
    history = expected_ids(sim) & {event["id"] for event in committer.events}  # each checked for once and order
    assert_exactly_once_in_order(committer.events, sim, raised_at_start | cleared_since | history)
