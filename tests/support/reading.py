"""What the reading tests and `bench.reads` share: the property scenarios' world and settings, and a client
counting records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from borobridge.boro.client import BoroClient, PageResult
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.settings import Settings, load_settings
from borobridge.simulator import Faults, Personality, Simulator
from tests.support.clock import ManualClock
from tests.support.settings import bridge_environ

SCENARIO_START: Final = 1_790_000_000.0


def scenario_world(seed: int, personality: Personality, faults: Faults) -> tuple[Simulator, ManualClock]:
    """A property scenario's world: two projects of two probes with three tasks each, about 8 records a second,
    states lasting 6 s on average; and the clock it runs on, at its start."""
    clock = ManualClock(SCENARIO_START)
    sim = Simulator(
        seed=seed,
        projects=2,
        probes_per_project=2,
        tasks_per_probe=3,
        personality=personality,
        faults=faults,
        clock=clock,
        rate_per_second=8.0,
        mean_state_seconds=6.0,
    )
    return sim, clock


def scenario_settings(page_size: int) -> Settings:
    """The property scenarios' settings: pages of ``page_size``, a poll a second, retries at once, a sweep every 5 s."""
    return load_settings(
        None,
        bridge_environ(
            BOROBRIDGE_BORO__PAGE_SIZE=str(page_size),
            BOROBRIDGE_BORO__POLL_INTERVAL="1",
            BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF="0.001",
            BOROBRIDGE_BORO__RETRY__MAX_BACKOFF="0.001",
            BOROBRIDGE_BORO__RETRY__MAX_DRAIN_REQUESTS="400",
            BOROBRIDGE_RECONCILE__INTERVAL="5",
            BOROBRIDGE_RECONCILE__WINDOW="900",
        ),
    )


class CountingClient(BoroClient):
    """The Boro client, counting the records in its TaskAlarms replies."""

    records: int = 0

    async def task_alarms(self, queries: Sequence[AlarmQuery]) -> list[PageResult]:
        """The client's own batched TaskAlarms, its records counted."""
        results = await super().task_alarms(queries)
        self.records += sum(result.size for result in results if isinstance(result, AlarmPage))
        return results
