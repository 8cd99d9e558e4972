"""The real ``borobridge run`` process on real Kafka, SIGKILLed and restarted, against each personality and the hardest.

The same harness as ``test_personalities_process`` with a ``kafka`` section: an independent ``read_committed``
consumer reads the events topics and must find every transition exactly once by (source, id), in per-task
order. One case restarts the broker while the world moves.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from borobridge.simulator import Faults, Personality, describe, serve_simulator
from tests.support.bridge_process import (
    BridgeProcess,
    assert_once_and_in_order,
    bridge_config,
    kill_at_random_moments,
    moving_world,
    wait_until_complete,
)
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import committed, kafka_section
from tests.support.kafka_reading import kafka_settings
from tests.support.personalities import EVERYTHING_BUT_STOPS, HARDEST, SOME_FAULTS

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HISTORY_S = 15.0
MOVING_S = 3.0
CATCH_UP_S = 90.0
RESTARTS_THE_BROKER = "reply_time"

CASES = {
    "reply_time": (Personality(token="reply_time"), Faults()),
    "newest_first": (Personality(token_order="newest_first", period_order="newest_first"), Faults()),
    "clock-behind": (Personality(clock_offset=-300), Faults()),
    "probe_stops": (Personality(probe_stops=0.05, stop_seconds=8), Faults()),
    "combined": (EVERYTHING_BUT_STOPS, SOME_FAULTS),
    "hardest-with-faults": (HARDEST, SOME_FAULTS),
    "timestamp": (Personality(token="timestamp"), Faults()),
    "record_time-exclusive": (Personality(token="record_time", token_compare="exclusive"), Faults()),
    "periods-newest_first": (Personality(period_order="newest_first"), Faults()),
    "clock-an-hour-ahead": (Personality(clock_offset=3600), Faults()),
    "moving_records": (Personality(moving_records=0.3), Faults()),
}


@pytest.mark.parametrize("case", CASES)
async def test_every_transition_committed_once_in_order(kafka: KafkaCluster, tmp_path: Path, case: str) -> None:
    personality, faults = CASES[case]
    seed = list(CASES).index(case) + 200
    rng = random.Random(seed)
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(
        HISTORY_S, seed=seed, projects=2, rate_per_second=20, personality=personality, faults=faults
    )

    async def committed_ids() -> set[str]:
        return {event["id"] for event in await committed(kafka.bootstrap, prefix, sim)}

    async with serve_simulator(sim) as url:
        section = kafka_section(settings, outage=case == RESTARTS_THE_BROKER)
        config = bridge_config(tmp_path, url, name=prefix, kafka=section)
        bridge = BridgeProcess(["--config", str(config)], tmp_path / "bridge.log", tmp_path)
        try:
            async with moving_world(sim, rng) as world:
                await kill_at_random_moments(bridge, rng, kills=rng.randint(2, 3))
                if case == RESTARTS_THE_BROKER:
                    await bridge.wait_restored()  # a bridge that cannot reach Kafka at start-up refuses to start
                    await kafka.restart_node(1)
                await asyncio.sleep(MOVING_S)
            expected = expected_ids(sim)
            await wait_until_complete(committed_ids, expected, bridge, seconds=CATCH_UP_S)
        finally:
            exit_status = await bridge.stop()
    events = await committed(kafka.bootstrap, prefix, sim)
    print(
        f"{case} ({describe(personality)}): {len(expected)} expected, {len(events)} committed, "
        f"{bridge.kills} SIGKILLs, {bridge.swept()} found by the sweep; missing: "
        f"{world.explain(sim, expected - {event['id'] for event in events})}"
    )
    assert exit_status == 0, bridge.said()[-5000:]
    assert expected_ids(sim) == expected, "the world moved after it should have stood still"
    assert_once_and_in_order(events, sim, expected, world)
