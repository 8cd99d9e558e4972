"""How often the bridge reads each change: the real cycle against the simulator, records counted in the replies.

Every change must be delivered exactly once whatever the reading costs (the property tests say so); these tests pin
the cost, on a server that hides nothing and moves no record, so that a change that reads a backlog several times
over does not go unnoticed.
"""

from __future__ import annotations

import asyncio
from typing import Final

import httpx

from borobridge.checkpoint import Checkpoint
from borobridge.pipeline import Pipeline
from borobridge.settings import load_settings
from borobridge.simulator import Simulator, as_mock_transport_handler
from borobridge.sinks import Batch
from tests.support.clock import ManualClock
from tests.support.expectations import expected_ids
from tests.support.reading import CountingClient
from tests.support.settings import boro_environ

START: Final = 1_790_000_000.0
BACKLOG: Final = 800  # records in one second: eight full pages
MAX_POLLS: Final = 200


class IdSink:
    """Keeps the ids of the delivered events; nothing was ever committed before."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def restore(self) -> dict[str, Checkpoint]:
        return {}

    async def deliver(self, batch: Batch) -> None:
        self.ids += [event.attributes["id"] for event in batch.events]


async def no_sleep(_: float) -> None:
    return None


async def reads_per_backlog(backlogs: int) -> list[float]:
    """Records read per change of each of ``backlogs`` backlogs of ``BACKLOG`` records in one second, one project
    polled every second, each backlog delivered whole (once each) before the next."""
    clock = ManualClock(START)
    sim = Simulator(seed=3, projects=1, rate_per_second=0.0, mean_state_seconds=1e9, clock=clock)
    settings = load_settings(None, boro_environ(BOROBRIDGE_BORO__POLL_INTERVAL="1", BOROBRIDGE_BORO__PROJECTS="[23]"))
    ratios: list[float] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(as_mock_transport_handler(sim))) as http:
        client = CountingClient(http, settings.boro, sleep=no_sleep)
        sink = IdSink()
        pipeline = Pipeline(client, sink, settings, server_name="boro-test", clock=clock)
        await pipeline.restore()
        await pipeline.poll_once()
        for _ in range(backlogs):
            clock.now += 0.99
            await pipeline.poll_once()
            clock.now += 0.01
            changes = len(sim.advance(new_records=BACKLOG))
            client.records = 0
            for _ in range(MAX_POLLS):
                if expected_ids(sim) <= set(sink.ids):
                    break
                clock.now += 1.0
                await pipeline.poll_once()
            assert expected_ids(sim) == set(sink.ids), "every change delivered"
            assert len(sink.ids) == len(set(sink.ids)), "and once"
            ratios.append(client.records / changes)
    return ratios


def test_a_backlog_in_one_second_is_paged_once() -> None:
    """The crowded second is paged once and checked by a listing of its few active states, never paged again for
    a pass that merely found news, nor again as the boundary second of the next window: a first backlog (no task
    seen yet, one call per read) costs little more than one read per change; a second one, with the tasks seen
    also asked for by id (two calls per read), little more than two. Before, every paged pass was read twice, a
    split window paged its boundary second twice and the gap started a second before the floor: about 8 and 15."""
    first, second = asyncio.run(reads_per_backlog(2))
    assert first <= 1.5, f"the first backlog was read {first:.2f} times per change"
    assert second <= 2.6, f"the second backlog was read {second:.2f} times per change"
