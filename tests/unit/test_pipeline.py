"""The poll cycle on its own: the Pipeline with an in-memory committer and the simulator over httpx.MockTransport.

Rounds are read, fed and delivered; a failed delivery rolls its streams back, one stream's failed read leaves the
others alone, and a round read while the one before it was being delivered is given up when that one fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import httpx
import msgspec

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint
from borobridge.errors import SinkError
from borobridge.pipeline import Pipeline
from borobridge.settings import Settings
from borobridge.simulator import Simulator, StoredRecord, as_mock_transport_handler
from borobridge.sinks import Batch
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.settings import bridge_settings

CYCLES: Final = 50  # at most this many poll cycles for a scenario to be read whole
GATE_S: Final = 5.0  # at most this long for a delivery to wait for the next round's read
REQUEST_S: Final = 0.03  # Boro's time to answer one request, on the pipeline's clock
BACKLOG: Final = 300  # records one project gains at once: with pages of 5, a catch-up of many rounds
LIVE_AFTER: Final = 10  # the quiet project's alarm is raised this many requests into the catch-up


class MemorySink:
    """Keeps what it delivers; fails the deliveries it is told to, and can hold one until an event is set."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.checkpoints: dict[str, Checkpoint] = {}
        self.deliveries = 0
        self.failed: list[Batch] = []
        self.fail_at: set[int] = set()
        self.fail_first_events = False  # fail the first delivery that carries events
        self.hold_until: asyncio.Event | None = None

    async def restore(self) -> dict[str, Checkpoint]:
        return dict(self.checkpoints)

    async def deliver(self, batch: Batch) -> None:
        self.deliveries += 1
        if self.hold_until is not None:
            async with asyncio.timeout(GATE_S):
                await self.hold_until.wait()
            self.hold_until = None
        if self.fail_first_events and batch.events:
            self.fail_first_events = False
            self.fail_at.add(self.deliveries)
        if self.deliveries in self.fail_at:
            self.failed.append(batch)
            raise SinkError(f"delivery {self.deliveries} refused by the test")
        self.events += [msgspec.json.decode(event.structured()) for event in batch.events]
        self.checkpoints |= {checkpoint.stream: checkpoint for checkpoint in batch.checkpoints}


class Boro:
    """The simulator's answers; TaskAlarms calls for ``failing_project`` answered with an error item."""

    def __init__(self, sim: Simulator) -> None:
        self._answer = as_mock_transport_handler(sim)
        self.failing_project: int | None = None
        self.task_alarms_requests = 0
        self.on_task_alarms: Callable[[int], None] = lambda _: None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self._answer(request)
        calls = {call["id"]: call for call in json.loads(request.content)["methods"]}
        if not any(call["method"] == "TaskAlarms" for call in calls.values()):
            return response
        self.task_alarms_requests += 1
        self.on_task_alarms(self.task_alarms_requests)
        if self.failing_project is None or response.status_code != 200:
            return response
        body = json.loads(response.content)
        for item in body["reply"]:
            if calls[item["id"]]["params"]["project_id"] == self.failing_project:
                item.pop("result", None)
                item["error"] = "Access denied"
        return httpx.Response(200, json=body)


class SteppedClock:
    """The pipeline's clock, moved on by the requests Boro answers."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def pipeline_on(
    boro: Boro, committer: MemorySink, settings: Settings, clock: Callable[[], float] | None = None
) -> AsyncIterator[Pipeline]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(boro)) as http:
        client = BoroClient(http, settings.boro, sleep=no_sleep)
        pipeline = Pipeline(client, committer, settings, server_name="boro-test", clock=clock or time.monotonic)
        await pipeline.restore()
        yield pipeline


async def no_sleep(_: float) -> None:
    return None


def ids_of(events: list[dict[str, Any]]) -> set[str]:
    return {event["id"] for event in events}


def batch_ids(batch: Batch) -> set[str]:
    return {event.attributes["id"] for event in batch.events}


def project_ids(sim: Simulator, project: int) -> set[str]:
    """The expected transition ids of one project's records."""
    records = {str(stored.alarm["id"]) for stored in sim.records() if stored.alarm["project_id"] == project}
    return {event_id for event_id in expected_ids(sim) if event_id.split("-")[0] in records}


async def poll_until_complete(pipeline: Pipeline, committer: MemorySink, expected: set[str]) -> None:
    for _ in range(CYCLES):
        if ids_of(committer.events) >= expected:
            return
        await pipeline.poll_once()


async def test_one_round_is_delivered_and_committed() -> None:
    sim = simulator_with_history(5, seed=3, projects=2, rate_per_second=4)
    committer = MemorySink()
    async with pipeline_on(Boro(sim), committer, bridge_settings()) as pipeline:
        await pipeline.poll_once()  # the snapshot, the history, then the live lane: rounds of one cycle
        streams = {stream.id for stream in pipeline.streams}
    assert expected_ids(sim), "the scenario has transitions to deliver"
    assert_exactly_once_in_order(committer.events, sim, expected_ids(sim))
    assert set(committer.checkpoints) == streams, "every stream's cursor is committed with its events"
    async with pipeline_on(Boro(sim), committer, bridge_settings()) as restarted:
        await restarted.poll_once()
    assert_exactly_once_in_order(committer.events, sim, expected_ids(sim))


async def test_a_failed_delivery_rolls_back_and_the_next_round_yields_the_same_events() -> None:
    sim = simulator_with_history(5, seed=3, projects=2, rate_per_second=4)
    committer = MemorySink()
    committer.fail_first_events = True
    async with pipeline_on(Boro(sim), committer, bridge_settings()) as pipeline:
        await pipeline.poll_once()
        assert committer.events == [], "nothing of a refused batch counts as delivered"
        snapshots = dict(committer.checkpoints)
        await pipeline.poll_once()
    [refused] = committer.failed
    assert batch_ids(refused), "the refused round carried the history"
    history_pending = [saved.backfill is not None or saved.resumed_position().busy for saved in snapshots.values()]
    assert all(history_pending), "its history read is not committed"
    assert batch_ids(refused) <= ids_of(committer.events), "the next rounds bring the refused events again"
    assert_exactly_once_in_order(committer.events, sim, expected_ids(sim))


async def test_a_stream_whose_read_fails_does_not_stop_the_others_in_the_round() -> None:
    sim = simulator_with_history(5, seed=3, projects=2, rate_per_second=4)
    failing, working = (project.id for project in sim.projects())
    boro = Boro(sim)
    boro.failing_project = failing
    committer = MemorySink()
    async with pipeline_on(boro, committer, bridge_settings()) as pipeline:
        await pipeline.poll_once()
        assert project_ids(sim, working), "the working project has transitions"
        assert project_ids(sim, failing), "the failing project has transitions"
        assert ids_of(committer.events) == project_ids(sim, working)
        assert [stream.split("/")[-1] for stream in committer.checkpoints] == [str(working)]
        boro.failing_project = None
        await poll_until_complete(pipeline, committer, expected_ids(sim))
    assert_exactly_once_in_order(committer.events, sim, expected_ids(sim))


async def test_a_round_read_during_a_failing_delivery_is_given_up_with_it() -> None:
    sim = simulator_with_history(30, seed=5, projects=1, rate_per_second=6)
    boro = Boro(sim)
    committer = MemorySink()
    second_round_read = asyncio.Event()
    boro.on_task_alarms = lambda requests: second_round_read.set() if requests == 2 else None
    committer.hold_until = second_round_read
    committer.fail_at = {1}
    # a short history: its ~150 reads of crowded seconds fit in the first cycle, so each task's order is strict
    settings = bridge_settings(BOROBRIDGE_BORO__PAGE_SIZE="10", BOROBRIDGE_BORO__RETRY__MAX_DRAIN_REQUESTS="400")
    async with pipeline_on(boro, committer, settings) as pipeline:
        await pipeline.poll_once()
        assert committer.deliveries == 1, "the round read behind the failed one is not delivered"
        assert boro.task_alarms_requests == 2, "the second round was read while the first was delivered"
        assert committer.events == []
        await poll_until_complete(pipeline, committer, expected_ids(sim))
    assert len(expected_ids(sim)) > 20, "the world needs more than two pages of ten"
    assert_exactly_once_in_order(committer.events, sim, expected_ids(sim))


async def test_a_long_catch_up_never_holds_another_stream_past_one_poll_interval() -> None:
    sim = Simulator(seed=3, projects=2, rate_per_second=0.0)
    busy, quiet = (project.id for project in sim.projects())
    clock, boro, sink = SteppedClock(), Boro(sim), MemorySink()
    live: list[StoredRecord] = []
    requests_at_delivery: dict[str, int] = {}
    created_at = 0

    def answered(count: int) -> None:
        nonlocal created_at
        clock.now += REQUEST_S
        for event in sink.events:
            requests_at_delivery.setdefault(event["id"], count)
        if count == created_at + LIVE_AFTER and not live:  # in the middle of the busy project's catch-up
            live.append(sim.trigger(sim.tasks(quiet)[0].task_id, "AudioTrackMissing"))
            created_at = count

    settings = bridge_settings(BOROBRIDGE_FIRST_START__MODE="now", BOROBRIDGE_BORO__PAGE_SIZE="5")
    interval_requests = settings.boro.poll_interval / REQUEST_S
    async with pipeline_on(boro, sink, settings, clock) as pipeline:
        await pipeline.poll_once()  # the snapshots: both streams follow tokens from here
        busy_tasks = sim.tasks(busy)
        for n in range(BACKLOG):
            sim.trigger(busy_tasks[n % len(busy_tasks)].task_id, "AudioTrackMissing")
        created_at = boro.task_alarms_requests
        boro.on_task_alarms = answered
        await pipeline.poll_once()  # one cycle: the busy project's catch-up takes every request it may
        await pipeline.poll_once()
    assert live, "the catch-up ended before the quiet project's alarm was raised: nothing was tested"
    live_id = f"{live[0].alarm['id']}-raised"
    delivered = [event["id"] for event in sink.events]
    assert live_id in delivered, "the quiet project's alarm was never delivered"
    behind = project_ids(sim, busy) - set(delivered[: delivered.index(live_id)])
    assert behind, "the busy project had caught up before the quiet one was read: nothing was tested"
    waited = requests_at_delivery.get(live_id, boro.task_alarms_requests) - created_at
    assert waited <= interval_requests + 2, f"the quiet project waited {waited} requests behind the catch-up"
