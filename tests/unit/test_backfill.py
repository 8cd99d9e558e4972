"""A first start that reads history (``all``, ``since``) never hides live alarms: the history is read in a lane
beside the live one, a few reads per round, and a crash resumes it where its last checkpoint left it.

The real pipeline runs against the simulator (``httpx.MockTransport``) with twenty projects and an hour of
history; the committer keeps what it was given as JSON bytes, the way a store does.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Final

import httpx
import msgspec
import pytest

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.reading import Window
from borobridge.settings import Settings, load_settings
from borobridge.simulator import Simulator, as_mock_transport_handler
from tests.support.clock import ManualClock
from tests.support.crashing_sink import Crash, DurableSink
from tests.support.expectations import expected_ids

START: Final = 1_790_000_000.0
HISTORY: Final = 3_600  # seconds of history before the first start
PROJECTS: Final = 20
MAX_CYCLES: Final = 400  # a bound on every loop below: far more cycles than the whole history takes


class Recorder:
    """The simulator as an HTTP handler, keeping the TaskAlarms calls of every request."""

    def __init__(self, sim: Simulator) -> None:
        self._answer = as_mock_transport_handler(sim)
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        methods = msgspec.json.decode(request.read())["methods"]
        self.requests.append([call["params"] for call in methods if call["method"] == "TaskAlarms"])
        return self._answer(request)


def bridge_settings() -> Settings:
    return load_settings(
        None,
        {
            "BOROBRIDGE_BORO__URL": "http://boro.test/ctrl_api/v1/json",
            "BOROBRIDGE_BORO__USER_ID": "4",
            "BOROBRIDGE_BORO__PAGE_SIZE": "20",
            "BOROBRIDGE_BORO__POLL_INTERVAL": "1",
            "BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF": "0.001",
            "BOROBRIDGE_BORO__RETRY__MAX_BACKOFF": "0.001",
            "BOROBRIDGE_BORO__RETRY__MAX_DRAIN_REQUESTS": "8",  # a cycle reads a fraction of the history
            "BOROBRIDGE_FIRST_START__MODE": "all",
            "BOROBRIDGE_FIRST_START__HISTORY": "beside",
        },
    )


def world_with_history() -> tuple[Simulator, ManualClock]:
    """Twenty projects with an hour of history (about 200 records each), the clock at the start."""
    clock = ManualClock(START - HISTORY)
    sim = Simulator(
        seed=5, projects=PROJECTS, probes_per_project=1, tasks_per_probe=2, clock=clock, mean_state_seconds=600.0
    )
    clock.now = START
    sim.advance(new_records=PROJECTS * 200)
    return sim, clock


def live_alarms(sim: Simulator, clock: ManualClock) -> set[str]:
    """One new alarm on the first task of every project, raised a second later; their ``raised`` ids."""
    clock.now += 1.0
    ids = set()
    for project in sim.projects():
        task = sim.tasks(project.id)[0]
        ids.add(f"{sim.trigger(task.task_id, 'IatError').id}-raised")
    return ids


async def no_sleep(_: float) -> None:
    return None


async def until_everything_delivered(
    pipeline: Pipeline, sim: Simulator, clock: ManualClock, committer: DurableSink
) -> None:
    for _ in range(MAX_CYCLES):
        if expected_ids(sim) <= {event["id"] for event in committer.events} and not any(
            stream.backfill for stream in pipeline.streams
        ):
            return
        clock.now += 1.0
        await pipeline.poll_once()
    pytest.fail(f"not everything was delivered in {MAX_CYCLES} cycles")


async def cycles_until_a_crash(pipeline: Pipeline, clock: ManualClock) -> None:
    for _ in range(MAX_CYCLES):
        clock.now += 1.0
        await pipeline.poll_once()


def assert_each_once(committer: DurableSink, sim: Simulator) -> None:
    counts = Counter(event["id"] for event in committer.events)
    assert not [i for i, n in counts.items() if n > 1], "a transition was delivered twice"
    assert set(counts) == expected_ids(sim)


async def test_live_alarms_of_every_project_flow_while_twenty_histories_are_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, clock = world_with_history()
    committer = DurableSink()
    metrics = Metrics()
    options = bridge_settings()
    caplog.set_level(logging.INFO, logger="borobridge.pipeline")
    async with httpx.AsyncClient(transport=httpx.MockTransport(as_mock_transport_handler(sim))) as http:
        client = BoroClient(http, options.boro, sleep=no_sleep)
        pipeline = Pipeline(client, committer, options, server_name="boro-test", clock=clock, metrics=metrics)
        await pipeline.restore()
        await pipeline.poll_once()
        live = live_alarms(sim, clock)
        await pipeline.poll_once()
        delivered = {event["id"] for event in committer.events}
        assert live <= delivered, f"{len(live - delivered)} of {PROJECTS} projects' live alarms wait behind history"
        reading_history = [stream for stream in pipeline.streams if stream.backfill is not None]
        assert len(reading_history) > PROJECTS // 2, "the history was meant to be still read here"
        remaining = metrics.registry.get_sample_value(
            "borobridge_backfill_remaining_seconds", {"stream": reading_history[0].id}
        )
        assert remaining is not None
        assert remaining > 0
        await until_everything_delivered(pipeline, sim, clock, committer)
    assert_each_once(committer, sim)
    for stream in pipeline.streams:
        assert metrics.registry.get_sample_value("borobridge_backfill_remaining_seconds", {"stream": stream.id}) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert sum("reading history from" in m for m in messages) == PROJECTS
    assert sum("history read up to the live alarms" in m for m in messages) == PROJECTS
    assert any(": reading history, at period" in m for m in messages), "no progress line"


async def test_a_crash_in_the_middle_of_the_history_resumes_it() -> None:
    sim, clock = world_with_history()
    committer = DurableSink()
    committer.crash_at = {6}  # an even delivery: the process dies after writing it
    options = bridge_settings()
    recorder = Recorder(sim)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        client = BoroClient(http, options.boro, sleep=no_sleep)
        pipeline = Pipeline(client, committer, options, server_name="boro-test", clock=clock)
        await pipeline.restore()
        with pytest.raises(Crash):
            await cycles_until_a_crash(pipeline, clock)
        saved = {c.stream: c.backfill for c in committer.saved().values() if c.backfill is not None}
        assert saved, "the history read was meant to be under way at the crash"
        bounds = {stream: backfill.windows[-1].high for stream, backfill in saved.items()}
        assert None not in bounds.values(), "a history read reached into the present"
        moved = [b.windows != (Window(1, bounds[s]),) for s, b in saved.items()]
        assert all(moved), "no history read had moved on"
        recorder.requests.clear()
        pipeline = Pipeline(client, committer, options, server_name="boro-test", clock=clock)
        await pipeline.restore()
        clock.now += 1.0
        await pipeline.poll_once()
        first_history_read: dict[int, int] = {}
        for call in (call for calls in recorder.requests for call in calls):
            if "period_to" in call.get("filter", {}):  # the live lane's period reads are open-ended
                first_history_read.setdefault(call["project_id"], call["filter"]["period_from"])
        resumed_at = {int(stream.rsplit("/", 1)[1]): backfill.windows[0].low for stream, backfill in saved.items()}
        assert {p: first_history_read.get(p) for p in resumed_at} == resumed_at
        resumed = {s.id: s.backfill for s in pipeline.streams if s.id in saved and s.backfill is not None}
        assert all(bounds[i] == b.windows[-1].high for i, b in resumed.items()), "the bound moved"
        await until_everything_delivered(pipeline, sim, clock, committer)
    assert_each_once(committer, sim)


def test_the_history_lane_survives_a_checkpoint_written_before_it_existed() -> None:
    old = msgspec.json.encode({"version": 2, "stream": "boro-test/23", "update_token": 5})
    assert msgspec.json.decode(old, type=Checkpoint).backfill is None
