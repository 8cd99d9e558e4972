"""Scale: one ``borobridge run`` process polling 1,000 projects every 5 s; its CPU and resident memory.

The simulator runs in a process of its own (1,000 projects, 6 tasks each, 20 new records per second in all);
the bridge discovers the projects with ProjectsList, batches 50 TaskAlarms calls per request and writes JSON
lines to a file (the embedded default's sink, fsync per round), so no broker shares its measurement. Once every
stream has started, ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` are read every second for the window;
CPU is shown per slice of the window (median, min, max over slices) and over the whole window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.processes import REPO, ProcessReading, machine_load, read_process, simulator_process, stop_process
from bench.report import Check, Series, Table

PROJECTS: Final = 1000
POLL_INTERVAL: Final = 5.0
STARTUP_TIMEOUT: Final = 600.0
STARTED_MARK: Final = "started now at token"
LOG_DRAIN_TIMEOUT: Final = 10.0
TARGET_CPU_SHARE: Final = 0.25
TARGET_RSS_MB: Final = 150.0


def bridge_config(directory: Path, url: str) -> Path:
    """``borobridge run`` polling every project of ``url`` into a JSON-lines file."""
    config = {
        "name": "bench-scale",
        "boro": {"url": url, "user_id": 4, "projects": "all", "poll_interval": POLL_INTERVAL},
        "first_start": {"mode": "now"},
        "output": {"path": str(directory / "events.jsonl")},
        "state": {"path": str(directory / "state.json")},
        "health": {"enabled": False},
        "logging": {"level": "INFO"},
    }
    path = directory / "bridge.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@dataclass
class StartWatch:
    """Counts the streams the bridge reports as started, from its log on stderr."""

    expected: int
    started: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self, stream: asyncio.StreamReader) -> None:
        """Read the log to its end, counting start lines (the rest is discarded)."""
        while line := await stream.readline():
            if STARTED_MARK in line.decode(errors="replace"):
                self.started += 1
                if self.started >= self.expected:
                    self.done.set()


@dataclass
class Window:
    """Readings of one process taken once a second."""

    readings: list[tuple[float, ProcessReading]] = field(default_factory=list)

    def cpu_shares(self, slice_seconds: float) -> list[float]:
        """CPU used per wall second (1.0 = one core), per slice of the window."""
        shares = []
        start_at, start = self.readings[0]
        for at, reading in self.readings[1:]:
            if at - start_at >= slice_seconds - 0.01:
                shares.append((reading.cpu_seconds - start.cpu_seconds) / (at - start_at))
                start_at, start = at, reading
        return shares

    def overall_share(self) -> float:
        """CPU per wall second over the whole window."""
        (first_at, first), (last_at, last) = self.readings[0], self.readings[-1]
        return (last.cpu_seconds - first.cpu_seconds) / (last_at - first_at)

    def rss_mb(self) -> list[float]:
        """Resident memory at each reading, in MiB."""
        return [reading.rss_bytes / 2**20 for _, reading in self.readings]


async def sample(pids: list[int], seconds: float) -> list[Window]:
    """One reading per second of each process, for ``seconds``."""
    windows = [Window() for _ in pids]
    deadline = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        for pid, window in zip(pids, windows, strict=True):
            window.readings.append((now, read_process(pid)))
        if now >= deadline:
            return windows
        await asyncio.sleep(min(1.0, max(deadline - now, 0.0)))


async def measure(*, quick: bool) -> Table:
    """Start the simulator and the bridge, wait until every stream started, then sample the window."""
    projects, seconds, settle = (50, 6.0, 1.0) if quick else (PROJECTS, 120.0, POLL_INTERVAL)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        options = ["--projects", str(projects), "--rate", str(projects / 50), "--step", "1.0", "--retain", "600"]
        async with simulator_process(options) as sim:
            config = bridge_config(Path(scratch), sim.url)
            command = [sys.executable, "-m", "borobridge", "run", "--config", str(config)]
            bridge = await asyncio.create_subprocess_exec(*command, cwd=REPO, stderr=asyncio.subprocess.PIPE)
            assert bridge.stderr is not None
            watch = StartWatch(projects)
            reader = asyncio.create_task(watch.follow(bridge.stderr), name="bridge-log")
            try:
                startup = await _wait_started(watch)
                await asyncio.sleep(settle)
                written = _lines(Path(scratch) / "events.jsonl")
                bridge_window, sim_window = await sample([bridge.pid, sim.process.pid], seconds)
                written = _lines(Path(scratch) / "events.jsonl") - written
            finally:
                await stop_process(bridge)
                await asyncio.wait_for(reader, LOG_DRAIN_TIMEOUT)  # the log ends with the process
    table = _table(bridge_window, sim_window, projects, seconds, startup)
    table.notes.append(f"{written} events written during the window")
    return table


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


async def _wait_started(watch: StartWatch) -> float:
    started = time.monotonic()
    try:
        await asyncio.wait_for(watch.done.wait(), STARTUP_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(
            f"only {watch.started} of {watch.expected} streams started in {STARTUP_TIMEOUT:.0f} s"
        ) from None
    return time.monotonic() - started


def _table(bridge: Window, sim: Window, projects: int, seconds: float, startup: float) -> Table:
    slice_seconds = 10.0 if seconds >= 60 else 2.0
    table = Table(f"scale: {projects} projects polled every {POLL_INTERVAL:g} s, {seconds:.0f} s window")
    table.add(
        Series(f"bridge CPU per {slice_seconds:g} s slice", "% of core", _percent(bridge.cpu_shares(slice_seconds)))
    )
    table.add(Series("bridge resident memory", "MiB", bridge.rss_mb()))
    table.add(
        Series(f"simulator CPU per {slice_seconds:g} s slice", "% of core", _percent(sim.cpu_shares(slice_seconds)))
    )
    share = 100 * bridge.overall_share()
    table.checks.append(Check("bridge CPU over the window", share, 100 * TARGET_CPU_SHARE, unit="% of a core"))
    table.checks.append(Check("bridge peak resident memory", max(bridge.rss_mb()), TARGET_RSS_MB, unit="MiB"))
    table.notes.append(f"all {projects} streams started {startup:.0f} s after launch; {machine_load()}")
    return table


def _percent(shares: list[float]) -> list[float]:
    return [100 * share for share in shares]


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.scale [--quick]``."""
    parser = argparse.ArgumentParser(description="CPU and memory of one bridge polling 1,000 projects")
    parser.add_argument("--quick", action="store_true", help="50 projects, a 6 s window")
    asyncio.run(measure(quick=parser.parse_args(argv).quick)).print()


if __name__ == "__main__":
    main()
