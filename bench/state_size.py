"""State size: checkpoint bytes per stream, and state bytes written per second, 1,000 projects at 1 change/s each.

The real ``Pipeline`` (``BoroClient`` over HTTP, the embedded default's ``JsonLinesSink`` and its state file)
polls the simulator, served over HTTP on 127.0.0.1 by this process, every 5 s: ProjectsList discovery, first
start ``now``, 50 TaskAlarms calls per request, the reconciliation sweep on its defaults. Boro time is
compressed: the pipeline and the simulator share one clock that only the benchmark moves. After each cycle the
clock jumps by the delay the pipeline asked for (the poll interval, or none while a read is unfinished) and the
simulator advances to it, so every decision the pipeline makes on its clock (when a stream is due, when a sweep
starts) and every Boro time it reads are those of a bridge that answers at once; only the wall time is shorter.

Measured from every checkpoint the pipeline delivers: its bytes as the Kafka sink encodes the record (the JSON of
the ``Checkpoint`` with ``committed_at`` set, the same JSON the state file holds), and the state file's size after
each save (the embedded default rewrites the whole file each round). The events are counted, not written: their
bytes are not state.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import msgspec

from bench.processes import machine_load
from bench.report import Check, Series, Table
from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.pipeline import Pipeline
from borobridge.settings import load_settings
from borobridge.simulator import Simulator, serve_simulator
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.settings import boro_environ

PROJECTS: Final = 1000
MINUTES: Final = 10.0
POLL_INTERVAL: Final = 5.0
CHANGES_PER_RECORD: Final = 1.36  # the simulator's states clear later (about 0.36 of new records are states)
START: Final = 1_790_000_000.0
TARGET_CHECKPOINT_BYTES: Final = 16 * 1024
MAX_CYCLES_PER_POLL: Final = 200  # cycles at one instant (unfinished reads) before the run is given up
_ENCODER: Final = msgspec.json.Encoder()


class DrivenClock:
    """Boro's clock and the pipeline's, moved by the benchmark only."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Measures:
    """What the deliveries wrote, by minute of Boro time."""

    clock: DrivenClock
    state_path: Path
    latest: dict[str, Checkpoint] = field(default_factory=dict)
    latest_bytes: dict[str, int] = field(default_factory=dict)
    largest: int = 0
    checkpoint_bytes: Counter[int] = field(default_factory=Counter)
    state_bytes: Counter[int] = field(default_factory=Counter)
    checkpoints: Counter[int] = field(default_factory=Counter)
    position_only: int = 0  # checkpoints whose memory and tasks equal the stream's previous checkpoint
    end_of_minute: dict[int, list[int]] = field(default_factory=dict)

    def minute(self) -> int:
        """The minute of Boro time the run is in."""
        return int((self.clock.now - START) // 60)

    def note(self, checkpoint: Checkpoint) -> None:
        """One checkpoint record, encoded as the Kafka sink encodes it."""
        size = len(_ENCODER.encode(msgspec.structs.replace(checkpoint, committed_at=time.time())))
        previous = self.latest.get(checkpoint.stream)
        if previous is not None and _memory(previous) == _memory(checkpoint):
            self.position_only += 1
        self.latest[checkpoint.stream], self.latest_bytes[checkpoint.stream] = checkpoint, size
        self.largest = max(self.largest, size)
        self.checkpoint_bytes[self.minute()] += size
        self.checkpoints[self.minute()] += 1


def _memory(checkpoint: Checkpoint) -> tuple[object, ...]:
    return checkpoint.active, checkpoint.finished, checkpoint.tasks


@dataclass
class MeasuringSink:
    """Delivers to the embedded default's sink and measures what it writes."""

    sink: JsonLinesSink
    measures: Measures
    events: int = 0

    async def restore(self) -> dict[str, Checkpoint]:
        """The state file's checkpoints (none: every stream starts new)."""
        return await self.sink.restore()

    async def deliver(self, batch: Batch) -> None:
        """Save the checkpoints (the events are counted only), then note every byte written."""
        await self.sink.deliver(Batch(dead_letters=batch.dead_letters, checkpoints=batch.checkpoints))
        self.events += len(batch.events)
        for checkpoint in batch.checkpoints:
            self.measures.note(checkpoint)
        self.measures.state_bytes[self.measures.minute()] += self.measures.state_path.stat().st_size


@dataclass
class Run:
    """One compressed run: its measures, and what the world and the pipeline did meanwhile."""

    measures: Measures
    projects: int
    minutes: float
    changes_per_second: float
    changes: Counter[int]
    cycles: Counter[int]
    events: int
    wall_seconds: float


async def compressed_run(projects: int, minutes: float, changes_per_second: float = 1.0) -> Run:
    """Poll the simulator for ``minutes`` of Boro time, moving the shared clock from cycle to cycle;
    ``changes_per_second`` per project."""
    clock = DrivenClock(START)
    rate = projects * changes_per_second / CHANGES_PER_RECORD
    sim = Simulator(seed=5, projects=projects, rate_per_second=rate, clock=clock, retain_seconds=1800.0)
    changes: Counter[int] = Counter()
    cycles: Counter[int] = Counter()
    with tempfile.TemporaryDirectory(prefix="bench-state-") as scratch:
        state_path = Path(scratch) / "state.json"
        measures = Measures(clock, state_path)
        async with serve_simulator(sim) as url, httpx.AsyncClient() as http:
            settings = load_settings(None, boro_environ(url, BOROBRIDGE_BORO__POLL_INTERVAL=str(POLL_INTERVAL)))
            committer = MeasuringSink(JsonLinesSink(FileCheckpointStore(state_path)), measures)
            pipeline = Pipeline(BoroClient(http, settings.boro), committer, settings, server_name="bench", clock=clock)
            await pipeline.restore()
            started = time.perf_counter()
            await _drive(pipeline, sim, minutes=minutes, changes=changes, cycles=cycles, measures=measures)
            wall = time.perf_counter() - started
    return Run(measures, projects, minutes, changes_per_second, changes, cycles, committer.events, wall)


async def _drive(
    pipeline: Pipeline,
    sim: Simulator,
    *,
    minutes: float,
    changes: Counter[int],
    cycles: Counter[int],
    measures: Measures,
) -> None:
    clock, end, at_once, minute = measures.clock, START + 60 * minutes, 0, 0
    while clock.now < end:
        delay = await pipeline.poll_once()
        cycles[measures.minute()] += 1
        if delay <= 0:
            at_once += 1
            if at_once > MAX_CYCLES_PER_POLL:
                raise RuntimeError(f"{at_once} cycles without a pause at Boro time {clock.now - START:.0f} s")
            continue
        at_once = 0
        clock.now += delay
        changes[measures.minute()] += len(sim.advance())
        if measures.minute() > minute:  # a minute of Boro time ended: note every stream's latest size
            measures.end_of_minute[minute] = sorted(measures.latest_bytes.values())
            minute = measures.minute()


def _table(run: Run) -> Table:
    measures, seconds = run.measures, 60 * run.minutes
    whole = list(range(int(run.minutes)))  # whole minutes of Boro time, for per-minute rates
    title = (
        f"state size: {run.projects} projects at {run.changes_per_second:g} change/s each, {run.minutes:g} min of "
        "Boro time, "
        f"poll every {POLL_INTERVAL:g} s"
    )
    table = Table(title)
    final = sorted(measures.latest_bytes.values())
    table.add(Series("checkpoint bytes per stream at the end", "bytes", final))
    table.add(Series("checkpoint records written per s", "bytes/s", [measures.checkpoint_bytes[m] / 60 for m in whole]))
    table.add(Series("state file bytes written per s", "bytes/s", [measures.state_bytes[m] / 60 for m in whole]))
    per_cycle = [measures.checkpoints[m] / (run.projects * 60 / POLL_INTERVAL) for m in whole]
    table.add(Series("checkpoints per stream and poll", "fraction", per_cycle))
    table.add(Series("changes per project per s", "changes/s", [run.changes[m] / 60 / run.projects for m in whole]))
    table.checks.append(Check("largest checkpoint written", measures.largest, TARGET_CHECKPOINT_BYTES, unit="bytes"))
    growth = ", ".join(
        f"{minute + 1}: {statistics.median(sizes):,.0f}/{sizes[-1]:,.0f}"
        for minute, sizes in sorted(measures.end_of_minute.items())
        if sizes
    )
    table.notes.append(f"checkpoint bytes per stream (p50/max) at the end of each minute of Boro time: {growth}")
    table.notes.append(_largest(measures))
    total_checkpoints = sum(measures.checkpoint_bytes.values())
    total_state = sum(measures.state_bytes.values())
    table.notes.append(
        f"over the whole run: checkpoint records {total_checkpoints / seconds:,.0f} bytes/s, state file "
        f"{total_state / seconds:,.0f} bytes/s, {sum(measures.checkpoints.values())} checkpoints "
        f"({measures.position_only} of them changed the position only), "
        f"{sum(run.cycles.values())} cycles, {run.events} events"
    )
    table.notes.append(f"{seconds:.0f} s of Boro time took {run.wall_seconds:.0f} s of wall time; {machine_load()}")
    return table


def _largest(measures: Measures) -> str:
    """What the largest checkpoint at the end is made of, field by field (encoded bytes)."""
    stream = max(measures.latest_bytes, key=measures.latest_bytes.__getitem__)
    checkpoint = measures.latest[stream]
    ids = sum(len(bucket.ids) for bucket in checkpoint.finished)
    parts = {
        "finished": len(_ENCODER.encode(checkpoint.finished)),
        "active": len(_ENCODER.encode(checkpoint.active)),
        "tasks": len(_ENCODER.encode(checkpoint.tasks)),
        "position": len(_ENCODER.encode(checkpoint.position)),
    }
    shown = ", ".join(f"{name} {size:,}" for name, size in parts.items())
    return (
        f"largest at the end: {measures.latest_bytes[stream]:,} bytes ({shown}); {ids} finished ids in "
        f"{len(checkpoint.finished)} buckets, {len(checkpoint.active)} active"
    )


async def measure(*, quick: bool, minutes: float | None = None, rate: float = 1.0) -> Table:
    """One compressed run: 1,000 projects for 10 minutes (quick: 50 projects for 3 minutes)."""
    projects, default_minutes = (50, 3.0) if quick else (PROJECTS, MINUTES)
    return _table(await compressed_run(projects, minutes or default_minutes, rate))


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.state_size [--quick] [--minutes M] [--rate R]``."""
    parser = argparse.ArgumentParser(description="checkpoint bytes per stream and state bytes written per second")
    parser.add_argument("--quick", action="store_true", help="50 projects, 3 minutes of Boro time")
    parser.add_argument("--minutes", type=float, help="minutes of Boro time (default: 10; quick: 3)")
    parser.add_argument("--rate", type=float, default=1.0, help="changes per project per second (default: 1)")
    options = parser.parse_args(argv)
    asyncio.run(measure(quick=options.quick, minutes=options.minutes, rate=options.rate)).print()


if __name__ == "__main__":
    main()
