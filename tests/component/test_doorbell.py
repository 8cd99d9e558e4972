"""Webhooks make the bridge poll now: coalesced under a flood, never more often than ``min_gap``, and nothing lost
when webhooks stop or come before Boro shows the record. Boro is the simulator over real HTTP, counting requests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from borobridge.asgi_server import Receive, Scope, Send, serve_asgi
from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.doorbell import Doorbell, Doorbells
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.settings import WebhookSettings, load_settings
from borobridge.simulator import ENDPOINT_PATH, Simulator, SimulatorApp
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from borobridge.streams import stream_id
from borobridge.webhooks import WebhookApp, serve_webhooks
from tests.support.expectations import expected_ids, read_events
from tests.support.settings import boro_environ

PROJECTS = (23, 24)
TASK = 241555  # the first task of project 23
FIRST_CYCLE_S = 10.0


class CountingBoro:
    """The simulator's ASGI app, counting requests and holding them at a gate while it is closed."""

    def __init__(self, sim: Simulator) -> None:
        self._inner = SimulatorApp(sim)
        self.requests = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self._changed = asyncio.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            async with self._changed:
                self.requests += 1
                self._changed.notify_all()
            await self.gate.wait()
        await self._inner(scope, receive, send)

    async def until(self, count: int, seconds: float = 10.0) -> None:
        """Wait until ``count`` requests have arrived (TimeoutError after ``seconds``)."""
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: self.requests >= count)


class RefusingBoro(CountingBoro):
    """A Boro that refuses every request with HTTP 401 (a wrong key, say), counting them."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        async with self._changed:
            self.requests += 1
            self._changed.notify_all()
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"unauthorized"})


class WatchedSink:
    """A JSON-lines committer that lets a test await what it has delivered."""

    def __init__(self, sink: JsonLinesSink) -> None:
        self._sink = sink
        self.ids: set[str] = set()
        self._changed = asyncio.Condition()

    async def restore(self) -> dict[str, Checkpoint]:
        return await self._sink.restore()

    async def deliver(self, batch: Batch) -> None:
        await self._sink.deliver(batch)
        async with self._changed:
            self.ids |= {event.attributes["id"] for event in batch.events}
            self._changed.notify_all()

    async def until(self, wanted: Callable[[set[str]], bool], seconds: float) -> None:
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: wanted(self.ids))


class WatchedDoorbell(Doorbell):
    """A doorbell that tells a test when the poll loop first waits on it: its first cycle is over."""

    def __init__(self, *, min_gap: float, metrics: Metrics) -> None:
        super().__init__(min_gap=min_gap, metrics=metrics)
        self.idle = asyncio.Event()

    async def sleep(self, stop: asyncio.Event, delay: float, *, rings: bool = True) -> None:
        self.idle.set()
        await super().sleep(stop, delay, rings=rings)


class Bridge:
    """A polling pipeline with its doorbell, webhook endpoint and watched sink."""

    def __init__(self, boro: CountingBoro, sink: WatchedSink, webhooks: httpx.AsyncClient, metrics: Metrics) -> None:
        self.boro = boro
        self.sink = sink
        self.webhooks = webhooks
        self.metrics = metrics

    async def ring(self, project_id: int = 23) -> int:
        return (await self.webhooks.post(f"/webhooks/boro/{project_id}", content=b"{}")).status_code

    def counted(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(name) or 0.0


@contextlib.asynccontextmanager
async def running_bridge(
    tmp_path: Path,
    sim: Simulator,
    *,
    poll_interval: float,
    min_gap: float,
    boro: CountingBoro | None = None,
    max_backoff: float = 30.0,
    shards: bool = False,
) -> AsyncIterator[Bridge]:
    """A polling pipeline with its doorbell; with ``shards``, two pipelines polling one project each, as two
    shards of one process, each with a doorbell of its own (the first one's sink is the bridge's)."""
    boro = boro or CountingBoro(sim)
    settings = load_settings(
        None,
        boro_environ(
            BOROBRIDGE_BORO__PROJECTS=f"[{', '.join(map(str, PROJECTS))}]",
            BOROBRIDGE_BORO__POLL_INTERVAL=str(poll_interval),
            BOROBRIDGE_BORO__RETRY__MAX_BACKOFF=str(max_backoff),
            BOROBRIDGE_FIRST_START__MODE="all",
        ),
    )
    metrics = Metrics()
    doorbells = Doorbells(lambda: WatchedDoorbell(min_gap=min_gap, metrics=metrics))
    owners = [stream_id("boro-test", project, settings.boro).__eq__ for project in PROJECTS] if shards else [None]
    sinks = [
        WatchedSink(JsonLinesSink(FileCheckpointStore(tmp_path / f"state{n}.json"), tmp_path / f"events{n}.jsonl"))
        for n in ("", "-2")[: len(owners)]
    ]
    app = WebhookApp(WebhookSettings(enabled=True), doorbells, lambda: set(PROJECTS), metrics)
    stop = asyncio.Event()
    async with (
        serve_asgi(boro, "127.0.0.1", 0, name="counting-boro") as boro_url,
        serve_webhooks(app, "127.0.0.1", 0) as webhook_url,
        httpx.AsyncClient() as http,
        httpx.AsyncClient(base_url=webhook_url, timeout=5.0) as webhooks,
    ):
        client = BoroClient(http, settings.boro, url=boro_url + ENDPOINT_PATH)
        bells: list[WatchedDoorbell] = []
        async with asyncio.TaskGroup() as tasks:
            for number, (owns, sink) in enumerate(zip(owners, sinks, strict=True)):
                pipeline = Pipeline(client, sink, settings, server_name="boro-test", metrics=metrics, owns=owns)
                await pipeline.restore()
                bell = doorbells.open(number, pipeline.polls)
                assert isinstance(bell, WatchedDoorbell)
                bells.append(bell)
                tasks.create_task(pipeline.run(stop, bell))
            try:
                async with asyncio.timeout(FIRST_CYCLE_S):  # the first start read whole: the bridge waits for a ring
                    for bell in bells:
                        await bell.idle.wait()
                yield Bridge(boro, sinks[0], webhooks, metrics)
            finally:
                boro.gate.set()
                stop.set()
                for bell in bells:
                    bell.ring()


def quiet_simulator() -> Simulator:
    """A world where nothing happens unless a test makes it happen."""
    return Simulator(seed=3, rate_per_second=0.0)


async def test_a_flood_of_webhooks_makes_one_poll_run_and_one_wait(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, quiet_simulator(), poll_interval=30.0, min_gap=0.05) as bridge:
        settled = bridge.boro.requests
        bridge.boro.gate.clear()
        assert await bridge.ring() == 204
        await bridge.boro.until(settled + 1)  # the poll the first webhook started, held at Boro
        answers = await asyncio.gather(*(bridge.ring(PROJECTS[n % 2]) for n in range(200)))
        assert set(answers) == {204}
        bridge.boro.gate.set()
        await bridge.boro.until(settled + 2)  # the one poll that waited
        with pytest.raises(TimeoutError):
            await bridge.boro.until(settled + 3, seconds=1.0)
        assert bridge.counted("borobridge_webhooks_received_total") == 201
        assert bridge.counted("borobridge_webhook_polls_triggered_total") == 2
        assert bridge.counted("borobridge_webhooks_coalesced_total") == 199


async def test_a_webhook_rings_only_the_shard_that_polls_its_project(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, quiet_simulator(), poll_interval=30.0, min_gap=0.05, shards=True) as bridge:
        settled = bridge.boro.requests
        bridge.boro.gate.clear()
        assert await bridge.ring(PROJECTS[0]) == 204
        await bridge.boro.until(settled + 1)  # the poll of the shard that owns the project, held at Boro
        assert set(await asyncio.gather(*(bridge.ring(PROJECTS[0]) for _ in range(100)))) == {204}
        bridge.boro.gate.set()
        await bridge.boro.until(settled + 2)  # that shard's one poll that waited
        with pytest.raises(TimeoutError):  # the other shard polls no project of the webhooks'
            await bridge.boro.until(settled + 3, seconds=1.0)
        assert bridge.counted("borobridge_webhook_polls_triggered_total") == 2


async def test_polls_a_webhook_starts_are_min_gap_apart(tmp_path: Path) -> None:
    min_gap = 0.5
    async with running_bridge(tmp_path, quiet_simulator(), poll_interval=30.0, min_gap=min_gap) as bridge:
        settled = bridge.boro.requests
        starts = []
        for count in range(1, 4):
            assert await bridge.ring() == 204
            await bridge.boro.until(settled + count)
            starts.append(time.monotonic())
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert all(gap >= min_gap * 0.9 for gap in gaps), gaps
        assert bridge.counted("borobridge_webhook_polls_triggered_total") == 3


async def test_a_webhook_before_boro_shows_the_record_loses_nothing(tmp_path: Path) -> None:
    sim = quiet_simulator()
    async with running_bridge(tmp_path, sim, poll_interval=0.5, min_gap=0.0) as bridge:
        settled = bridge.boro.requests
        assert await bridge.ring() == 204  # Boro has not stored the record yet
        await bridge.boro.until(settled + 1)
        sim.trigger(TASK, "AudioTrackMissing")  # and no webhook follows it: webhooks stopped
        await bridge.sink.until(lambda ids: ids >= expected_ids(sim), seconds=10.0)
    assert {event["id"] for event in read_events(tmp_path / "events.jsonl")} == expected_ids(sim)


async def test_a_webhook_makes_the_record_appear_long_before_the_poll_interval(tmp_path: Path) -> None:
    sim = quiet_simulator()
    async with running_bridge(tmp_path, sim, poll_interval=30.0, min_gap=0.05) as bridge:
        sim.trigger(TASK, "BadSource")
        assert not bridge.sink.ids
        assert await bridge.ring() == 204
        await bridge.sink.until(lambda ids: ids >= expected_ids(sim) != set(), seconds=2.0)


async def test_webhooks_do_not_hasten_the_retries_of_a_refusing_boro(tmp_path: Path) -> None:
    sim = quiet_simulator()
    refusing = RefusingBoro(sim)
    async with running_bridge(tmp_path, sim, poll_interval=0.5, min_gap=0.0, boro=refusing) as bridge:
        refused = bridge.boro.requests  # the first cycle was refused: the bridge now waits its longest backoff
        answers = await asyncio.gather(*(bridge.ring() for _ in range(50)))
        assert set(answers) == {204}
        with pytest.raises(TimeoutError):
            await bridge.boro.until(refused + 1, seconds=1.0)
        assert bridge.counted("borobridge_webhook_polls_triggered_total") == 0
