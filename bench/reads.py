"""Records read per change: how many alarm records the bridge reads from Boro for each change it delivers.

Everything runs in this process: the simulator answers through ``httpx.MockTransport`` on a clock only this script
moves, the real ``Pipeline`` polls it, and a null sink takes the batches. ``records read`` is the sum of the
records in every TaskAlarms reply (repeats included); a change is a record created or cleared.

``python -m bench.reads`` prints one line per load:

- a backlog of 8,000 records in one second over 10 projects, then a second one (the second read again);
- a steady 950 records/s over 10 projects, polled every 1 s and every 0.25 s;
- the scenarios of ``tests/unit/test_reading_property.py`` (seeds 0 to 11, oldest- and newest-first listings,
  sequence tokens, no faults, no crashes), pages of 5 and 20, moving records 0 and 0.3.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import httpx

from borobridge.checkpoint import Checkpoint
from borobridge.pipeline import Pipeline
from borobridge.settings import Settings, load_settings
from borobridge.simulator import Faults, Personality, Simulator, as_mock_transport_handler
from borobridge.sinks import Batch
from tests.support.clock import ManualClock
from tests.support.expectations import expected_ids
from tests.support.reading import CountingClient, scenario_settings, scenario_world
from tests.support.settings import boro_environ

START: Final = 1_790_000_000.0
PROJECTS: Final = 10
BACKLOG: Final = 8_000
RATE: Final = 950.0
STEADY_SECONDS: Final = 60.0
WARM_UP_SECONDS: Final = 10.0
SEEDS: Final = range(12)
STEPS: Final = 25  # the property scenarios: seconds of the world moving, one poll cycle each
QUIET: Final = 500  # then at most this many cycles with the world standing still
MAX_POLLS: Final = 10_000


class NullSink:
    """Takes every batch; keeps the delivered event ids only."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.events = 0

    async def restore(self) -> dict[str, Checkpoint]:
        """Nothing was ever committed."""
        return {}

    async def deliver(self, batch: Batch) -> None:
        """Note the events' ids."""
        self.events += len(batch.events)
        self.ids.update(event.attributes["id"] for event in batch.events)


@dataclass
class Rig:
    """A simulator on a manual clock and the real pipeline reading it through a counting client."""

    sim: Simulator
    clock: ManualClock
    client: CountingClient
    sink: NullSink
    pipeline: Pipeline
    interval: float

    async def settle(self) -> None:
        """Poll every interval, the world standing still, until every change so far is delivered (bounded)."""
        for _ in range(MAX_POLLS):
            if expected_ids(self.sim) <= self.sink.ids:
                return
            self.clock.now += self.interval
            await self.pipeline.poll_once()
        raise RuntimeError("the bridge did not deliver every change")


Run = Callable[[Rig], Awaitable[float]]


async def with_rig(sim: Simulator, clock: ManualClock, settings: Settings, run: Run) -> float:
    """``run`` against a pipeline reading ``sim`` through a counting client, delivering to a null sink."""
    handler = as_mock_transport_handler(sim)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = CountingClient(http, settings.boro, sleep=_no_sleep)
        sink = NullSink()
        pipeline = Pipeline(client, sink, settings, server_name="bench", clock=clock)
        await pipeline.restore()
        return await run(Rig(sim, clock, client, sink, pipeline, settings.boro.poll_interval))


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Backlogs:
    """Backlogs of ``BACKLOG`` records in one second, one after the other; records read per change of the last."""

    count: int

    async def __call__(self, rig: Rig) -> float:
        await rig.pipeline.poll_once()
        ratio = 0.0
        for _ in range(self.count):
            rig.clock.now += 0.99
            await rig.pipeline.poll_once()
            rig.clock.now += 0.01
            changes = len(rig.sim.advance(new_records=BACKLOG))
            rig.client.records = 0
            await rig.settle()
            ratio = rig.client.records / changes
        return ratio


@dataclass
class Steady:
    """``RATE`` records/s polled every ``interval``: records read per change after a warm-up."""

    interval: float

    async def __call__(self, rig: Rig) -> float:
        changes, records = 0, 0
        steps = round((WARM_UP_SECONDS + STEADY_SECONDS) / self.interval)
        for step in range(steps):
            rig.clock.now += self.interval
            made = len(rig.sim.advance())
            before = rig.client.records
            await rig.pipeline.poll_once()
            if step * self.interval >= WARM_UP_SECONDS:
                changes, records = changes + made, records + rig.client.records - before
        return records / changes


class Scenario:
    """One property-test scenario: the world moves ``STEPS`` seconds, then stands still until all is delivered."""

    async def __call__(self, rig: Rig) -> float:
        for step in range(STEPS + QUIET):
            rig.clock.now += 1.0
            if step < STEPS:
                rig.sim.advance()
            elif expected_ids(rig.sim) <= rig.sink.ids:
                return float(rig.client.records)
            await rig.pipeline.poll_once()
        raise RuntimeError("the scenario did not deliver every change")


def backlog(count: int) -> float:
    """Records read per change of the ``count``-th backlog in a row."""
    clock = ManualClock(START)
    sim = Simulator(seed=11, projects=PROJECTS, rate_per_second=0.0, mean_state_seconds=1e9, clock=clock)
    settings = load_settings(None, boro_environ(BOROBRIDGE_BORO__POLL_INTERVAL="1"))
    return asyncio.run(with_rig(sim, clock, settings, Backlogs(count)))


def steady(interval: float) -> float:
    """Records read per change of a steady load polled every ``interval`` seconds."""
    clock = ManualClock(START)
    sim = Simulator(seed=11, projects=PROJECTS, rate_per_second=RATE, retain_seconds=300.0, clock=clock)
    settings = load_settings(None, boro_environ(BOROBRIDGE_BORO__POLL_INTERVAL=str(interval)))
    return asyncio.run(with_rig(sim, clock, settings, Steady(interval)))


def scenarios(page_size: int, moving: float) -> float:
    """Records read per change over the property scenarios (every seed, both listing orders) together."""
    records = changes = 0.0
    for seed in SEEDS:
        for order in ("oldest_first", "newest_first"):
            personality = Personality(token_order=order, period_order=order, moving_records=moving)
            sim, clock = scenario_world(seed, personality, Faults(retry_after=0.0))
            records += asyncio.run(with_rig(sim, clock, scenario_settings(page_size), Scenario()))
            changes += len(sim.changes())
    return records / changes


def main() -> None:
    """Print records read per change for every load."""
    loads: list[tuple[str, Callable[[], float]]] = [
        (f"a backlog of {BACKLOG:,} records in one second, first", lambda: backlog(1)),
        ("the same, a second time", lambda: backlog(2)),
        (f"a steady {RATE:,.0f} records/s, poll every 1 s", lambda: steady(1.0)),
        (f"a steady {RATE:,.0f} records/s, poll every 0.25 s", lambda: steady(0.25)),
        ("property scenarios, pages of 5, moving records 0", lambda: scenarios(5, 0.0)),
        ("property scenarios, pages of 20, moving records 0", lambda: scenarios(20, 0.0)),
        ("property scenarios, pages of 5, moving records 0.3", lambda: scenarios(5, 0.3)),
        ("property scenarios, pages of 20, moving records 0.3", lambda: scenarios(20, 0.3)),
    ]
    print(f"{'load, records read per change':<60} {'reads':>8}")
    for name, measure in loads:
        print(f"{name:<60} {measure():>8.2f}", flush=True)


if __name__ == "__main__":
    main()
