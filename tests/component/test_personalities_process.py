"""The real ``borobridge run`` process, SIGKILLed and restarted, against every personality of the simulator.

Each case serves a busy simulated world (pages of 20 fill up, bursts overflow them) over real HTTP, kills the
bridge at seeded random moments while the world moves, lets the world stand still and checks the JSON-lines
output against the simulator's ground truth: every transition exactly once, in per-task order, nothing else.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from borobridge.simulator import Faults, Personality, describe, serve_simulator
from tests.support.bridge_process import (
    PAGE_SIZE,
    BridgeProcess,
    assert_once_and_in_order,
    bridge_config,
    ids_written,
    kill_at_random_moments,
    moving_world,
    wait_until_complete,
)
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, read_events, simulator_with_history
from tests.support.personalities import EVERYTHING_BUT_STOPS, HARDEST, SOME_FAULTS

pytestmark = pytest.mark.slow

HISTORY_S = 15.0
MOVING_S = 3.0  # after the last restart, before the world stands still
CATCH_UP_S = 60.0
SWEPT_S = 15.0  # several sweeps (reconcile.interval 2 s) after the world stood still


CASES = {
    "timestamp": (Personality(token="timestamp"), Faults()),
    "record_time": (Personality(token="record_time"), Faults()),
    "reply_time": (Personality(token="reply_time"), Faults()),
    "reply_time-exclusive": (Personality(token="reply_time", token_compare="exclusive"), Faults()),
    "record_time-exclusive": (Personality(token="record_time", token_compare="exclusive"), Faults()),
    "tokens-newest_first": (Personality(token_order="newest_first"), Faults()),
    "periods-newest_first": (Personality(period_order="newest_first"), Faults()),
    "clock-behind": (Personality(clock_offset=-300), Faults()),
    "clock-ahead": (Personality(clock_offset=300), Faults()),
    "probe_stops": (Personality(probe_stops=0.05, stop_seconds=8), Faults()),
    "moving_records": (Personality(moving_records=0.3), Faults()),
    "everything-but-stops": (EVERYTHING_BUT_STOPS, Faults()),
    "record_time-mixed-orders": (
        Personality(
            token="record_time",
            token_compare="exclusive",
            token_order="newest_first",
            period_order="oldest_first",
            clock_offset=300,
        ),
        Faults(),
    ),
    "everything-but-stops-with-faults": (EVERYTHING_BUT_STOPS, SOME_FAULTS),
    "hardest": (HARDEST, Faults()),
    "hardest-with-faults": (HARDEST, SOME_FAULTS),
    "clock-an-hour-behind": (Personality(clock_offset=-3600), Faults()),
    "clock-an-hour-ahead": (Personality(token="reply_time", clock_offset=3600), Faults()),
}


@pytest.mark.parametrize("case", CASES)
async def test_every_transition_once_in_order_through_sigkills(tmp_path: Path, case: str) -> None:
    personality, faults = CASES[case]
    seed = list(CASES).index(case) + 100
    rng = random.Random(seed)
    sim = simulator_with_history(
        HISTORY_S, seed=seed, projects=2, rate_per_second=20, personality=personality, faults=faults
    )
    output = tmp_path / "events.jsonl"
    async with serve_simulator(sim) as url:
        config = bridge_config(tmp_path, url)
        args = ["--config", str(config), "--output", str(output), "--state", str(tmp_path / "state.json")]
        bridge = BridgeProcess(args, tmp_path / "bridge.log", tmp_path)
        try:
            async with moving_world(sim, rng) as world:
                await kill_at_random_moments(bridge, rng, kills=rng.randint(2, 3))
                await asyncio.sleep(MOVING_S)
            expected = expected_ids(sim)

            async def written() -> set[str]:
                return ids_written(output)

            await wait_until_complete(written, expected, bridge, seconds=CATCH_UP_S)
        finally:
            exit_status = await bridge.stop()
    events = read_events(output)
    print(
        f"{case} ({describe(personality)}): {len(expected)} expected, {len(events)} emitted, "
        f"{bridge.kills} SIGKILLs, {bridge.swept()} found by the sweep"
    )
    assert exit_status == 0, bridge.said()[-5000:]
    assert expected_ids(sim) == expected, "the world moved after it should have stood still"
    print("missing:", world.explain(sim, expected - {event["id"] for event in events}))
    assert_once_and_in_order(events, sim, expected, world)


async def test_a_clear_on_a_stopped_probe_in_a_crowded_second_arrives(tmp_path: Path) -> None:
    """A state of a stopped probe clears in the very second a burst overflows a page."""
    sim = simulator_with_history(5, seed=7, projects=1, rate_per_second=0)
    task = sim.tasks()[0]
    state = sim.trigger(task.task_id, "BadSource")
    output = tmp_path / "events.jsonl"
    async with serve_simulator(sim) as url:
        config = bridge_config(tmp_path, url)
        args = ["--config", str(config), "--output", str(output), "--state", str(tmp_path / "state.json")]
        bridge = BridgeProcess(args, tmp_path / "bridge.log", tmp_path)
        try:
            await bridge.start()

            async def written() -> set[str]:
                return ids_written(output)

            await wait_until_complete(written, expected_ids(sim), bridge, seconds=CATCH_UP_S)
            assert ids_written(output) == expected_ids(sim), bridge.said()[-3000:]
            sim.set_probe_alive(task.app_id, False)
            now = float(int(sim.clock())) + 0.5  # one host second for the clear and the burst
            sim.clear(state.id, now=now)
            sim.burst(3 * PAGE_SIZE, now=now)
            expected = expected_ids(sim)
            await wait_until_complete(written, expected, bridge, seconds=SWEPT_S)
        finally:
            exit_status = await bridge.stop()
    assert exit_status == 0, bridge.said()[-5000:]
    assert_exactly_once_in_order(read_events(output), sim, expected)
