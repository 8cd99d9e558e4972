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
from tests.support.clock import ManualClock
from tests.support.settings import boro_environ

START: Final = 1_790_000_000.0


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
    clock = ManualClock(START)
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


async def stop_then_full_page() -> tuple[set[str], str]:
    """Two tasks, one per probe, both listed by ``"*"``; one probe stops and a state of its task clears; a second
    later its neighbour fires (the next reply proves the later second), then more than a page of changes come."""
    clock = ManualClock(START)
    sim = Simulator(seed=5, projects=1, tasks_per_probe=1, rate_per_second=0.0, mean_state_seconds=1e9, clock=clock)
    settings = load_settings(
        None,
        boro_environ(
            BOROBRIDGE_BORO__POLL_INTERVAL="1", BOROBRIDGE_BORO__PROJECTS="[23]", BOROBRIDGE_BORO__PAGE_SIZE="5"
        ),
    )
    stopping, running = (task.task_id for task in sim.tasks())
    async with httpx.AsyncClient(transport=httpx.MockTransport(as_mock_transport_handler(sim))) as http:
        sink = IdSink()
        pipeline = Pipeline(
            BoroClient(http, settings.boro, sleep=no_sleep), sink, settings, server_name="t", clock=clock
        )
        await pipeline.restore()
        await pipeline.poll_once()
        state = sim.trigger(stopping, "AudioTrackMissing").alarm["id"]
        for _ in range(2):
            clock.now += 1.0
            sim.trigger(stopping, "Ttl")
            sim.trigger(running, "Ttl")
            await pipeline.poll_once()
        sim.set_probe_alive(next(p.app_id for p in sim.probes() if p.app_id != running), False)
        clock.now += 1.0
        sim.clear(state)
        clock.now += 1.0
        sim.trigger(running, "Ttl")
        await pipeline.poll_once()  # "*" lists the running task only; the stopped one was listed the read before
        clock.now += 1.0
        for _ in range(8):
            sim.trigger(running, "Ttl")
        for _ in range(5):
            await pipeline.poll_once()
            clock.now += 1.0
        return set(sink.ids), f"{state}-cleared"


def test_a_full_page_after_a_stop_reads_its_gap_from_before_the_stopped_task_s_change() -> None:
    """The read that left the stopped task out asked nobody by id, so it left that task complete only up to the
    read before it: the floor stays there, and the period read behind the next full page starts early enough."""
    delivered, clear = asyncio.run(stop_then_full_page())
    assert clear in delivered, "the clear is delivered by the token path, not left to the sweep"
