"""A probe that stops after ``"*"`` listed its tasks: the token path still delivers its tasks' changes, one read
late at most, while the tasks ``"*"`` just listed are not asked for by id again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import httpx

from borobridge.boro.client import BoroClient, PageResult
from borobridge.boro.queries import AlarmQuery
from borobridge.checkpoint import Checkpoint
from borobridge.pipeline import Pipeline
from borobridge.settings import load_settings
from borobridge.simulator import Simulator, as_mock_transport_handler
from borobridge.sinks import Batch
from tests.support.settings import boro_environ

START: Final = 1_790_000_000.0


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class CallingClient(BoroClient):
    """The Boro client, keeping the calls of its last TaskAlarms request."""

    last: Sequence[AlarmQuery] = ()

    async def task_alarms(self, queries: Sequence[AlarmQuery]) -> list[PageResult]:
        self.last = list(queries)
        return await super().task_alarms(queries)


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


async def stop_after_listing() -> tuple[list[int], list[str], list[str]]:
    """Every task raises a state and fires an event (so ``"*"`` lists all of them), then one probe stops and a
    state of its clears. Returns how many calls each read after the stop made, the events delivered by those
    reads, and the id of the clear."""
    clock = ManualClock()
    sim = Simulator(seed=5, projects=1, rate_per_second=0.0, mean_state_seconds=1e9, clock=clock)
    settings = load_settings(None, boro_environ(BOROBRIDGE_BORO__POLL_INTERVAL="1", BOROBRIDGE_BORO__PROJECTS="[23]"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(as_mock_transport_handler(sim))) as http:
        client = CallingClient(http, settings.boro, sleep=no_sleep)
        sink = IdSink()
        pipeline = Pipeline(client, sink, settings, server_name="boro-test", clock=clock)
        await pipeline.restore()
        await pipeline.poll_once()
        states = {task.task_id: sim.trigger(task.task_id, "AudioTrackMissing").alarm["id"] for task in sim.tasks()}
        for _ in range(2):  # the tasks are seen, then listed by "*" again
            clock.now += 1.0
            for task in sim.tasks():
                sim.trigger(task.task_id, "Ttl")
            await pipeline.poll_once()
        stopped = sim.probes()[0]
        sim.set_probe_alive(stopped.app_id, False)
        task = next(task for task in sim.tasks() if task.app_id == stopped.app_id)
        clock.now += 1.0
        sim.clear(states[task.task_id])
        delivered = len(sink.ids)
        calls = []
        for _ in range(2):
            clock.now += 1.0
            await pipeline.poll_once()
            calls.append(len(client.last))
        return calls, sink.ids[delivered:], [f"{states[task.task_id]}-cleared"]


def test_a_clear_of_a_task_whose_probe_stopped_after_star_listed_it_arrives_one_read_late_not_lost() -> None:
    calls, delivered, clear = asyncio.run(stop_after_listing())
    assert calls[0] == 1, 'every task seen was listed by the last read\'s "*": none is asked for by id'
    assert delivered == clear, "the clear arrives by the token path, once"
    assert calls[1] == 2, 'the next read asks by id for the tasks "*" left out, from the token before'
