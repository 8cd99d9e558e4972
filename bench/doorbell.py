"""Latency with and without webhooks, at a 5 s poll interval: ``python -m bench.doorbell [--quick]``.

The simulator (over real HTTP, in this process) creates one record at a time at seeded random moments; the real
``Pipeline`` polls it every 5 s and writes JSON lines. With webhooks, the simulator's webhook sender posts each
change to the bridge's real webhook listener, whose doorbell starts a poll at once. Latency runs from the moment
the simulator stored the record to the moment the sink wrote its event. The two modes alternate, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx

from bench.processes import machine_load
from bench.report import Series, Table
from borobridge.boro.client import BoroClient
from borobridge.boro.simulator import Simulator
from borobridge.boro.simulator_http import serve_simulator
from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.delivery import Batch
from borobridge.doorbell import Doorbell
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.settings import SimulatorWebhookSettings, WebhookSettings, load_settings
from borobridge.sinks.stream import JsonLinesSink
from borobridge.webhooks import WebhookApp, serve_webhooks

POLL_INTERVAL: Final = 5.0
TASKS: Final = (241555, 241561)  # the first task of projects 23 and 24
EVENT_TRIGGERS: Final = ("PsiChanged", "ContinuityCountError", "PtsError")


class TimedSink:
    """JSON lines, noting when each event id was written."""

    def __init__(self, sink: JsonLinesSink) -> None:
        self._sink = sink
        self.written: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def restore(self) -> dict[str, Checkpoint]:
        return await self._sink.restore()

    async def deliver(self, batch: Batch) -> None:
        await self._sink.deliver(batch)
        now = time.monotonic()
        for event in batch.events:
            self.written.setdefault(event.attributes["id"], now)
        self.changed.set()


@contextlib.asynccontextmanager
async def bridge(workdir: Path, *, webhooks: bool) -> AsyncIterator[tuple[Simulator, TimedSink]]:
    """A quiet simulator and a bridge polling it every 5 s, rung by its webhooks when ``webhooks``."""
    sim = Simulator(seed=7, rate_per_second=0.0)
    metrics = Metrics()
    doorbell = Doorbell(min_gap=0.05, metrics=metrics)
    app = WebhookApp(WebhookSettings(enabled=True), doorbell, lambda: {23, 24}, metrics)
    async with serve_webhooks(app, "127.0.0.1", 0) as webhook_url:
        ringing = SimulatorWebhookSettings(url=webhook_url + "/webhooks/boro/{project_id}") if webhooks else None
        async with serve_simulator(sim, webhooks=ringing) as boro_url, httpx.AsyncClient() as http:
            settings = load_settings(
                None,
                {
                    "BOROBRIDGE_BORO__USER_ID": "4",
                    "BOROBRIDGE_BORO__PROJECTS": "[23, 24]",
                    "BOROBRIDGE_BORO__POLL_INTERVAL": str(POLL_INTERVAL),
                    "BOROBRIDGE_RECONCILE__INTERVAL": "3600",
                },
            )
            sink = TimedSink(JsonLinesSink(FileCheckpointStore(workdir / "state.json"), workdir / "events.jsonl"))
            pipeline = Pipeline(BoroClient(http, settings.boro, url=boro_url), sink, settings, server_name="bench")
            await pipeline.restore()
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(pipeline.run(stop, doorbell), name="poll")
                try:
                    yield sim, sink
                finally:
                    stop.set()
            sink._sink.close()


async def measure(records: int, *, webhooks: bool, seed: int) -> list[float]:
    """Latency in ms of ``records`` events, created 0.5 to 6 s apart (so some fall late in a poll interval)."""
    rng = random.Random(seed)
    latencies = []
    with tempfile.TemporaryDirectory(prefix="bench-doorbell-") as workdir:
        async with bridge(Path(workdir), webhooks=webhooks) as (sim, sink):
            await asyncio.sleep(1.0)  # the first poll takes its token; the arrivals below are the workload
            for n in range(records):
                await asyncio.sleep(rng.uniform(0.5, 6.0))
                created = time.monotonic()
                record = sim.trigger(TASKS[n % 2], rng.choice(EVENT_TRIGGERS))
                wanted = f"{record.id}-event"
                async with asyncio.timeout(POLL_INTERVAL * 3):
                    while wanted not in sink.written:
                        sink.changed.clear()
                        await sink.changed.wait()
                latencies.append((sink.written[wanted] - created) * 1000)
    return latencies


async def run(records: int, rounds: int) -> Table:
    table = Table(f"latency at a {POLL_INTERVAL:g} s poll interval, {records} records per round, {rounds} rounds")
    polled: list[float] = []
    rung: list[float] = []
    for round_ in range(rounds):
        polled += await measure(records, webhooks=False, seed=round_)
        rung += await measure(records, webhooks=True, seed=round_)
    table.add(Series("poll only: mean ms", "ms", [sum(polled) / len(polled)]))
    table.add(Series("webhooks: mean ms", "ms", [sum(rung) / len(rung)]), baseline="poll only: mean ms")
    table.add(Series("poll only: max ms", "ms", [max(polled)]))
    table.add(Series("webhooks: max ms", "ms", [max(rung)]), baseline="poll only: max ms")
    table.notes.append(f"per-record ms, poll only: {', '.join(f'{value:.0f}' for value in polled)}")
    table.notes.append(f"per-record ms, webhooks: {', '.join(f'{value:.1f}' for value in rung)}")
    table.notes.append(machine_load())
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    options = parser.parse_args(argv)
    records, rounds = (2, 1) if options.quick else (10, 2)
    asyncio.run(run(records, rounds)).print()


if __name__ == "__main__":
    main()
