"""Scale: one ``borobridge run`` process polling 1,000 projects every 5 s; its CPU and resident memory.

The simulator runs in a process of its own (1,000 projects, 6 tasks each, 20 new records per second in all);
the bridge discovers the projects with ProjectsList, batches 50 TaskAlarms calls per request and writes JSON
lines to a file (the embedded default's sink, fsync per round), so no broker shares its measurement.

First start: every stream is new (``first_start.mode: now``); the state file is read every 0.1 s from the
launch on, and a stream has started once its committed checkpoint is past the first start's snapshot. Once every
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

import msgspec

from bench.processes import REPO, ProcessReading, machine_load, read_process, simulator_process, stop_process
from bench.report import Check, Series, Table
from borobridge.checkpoint import LocalState

PROJECTS: Final = 1000
POLL_INTERVAL: Final = 5.0
STARTUP_TIMEOUT: Final = 600.0
STATE_POLL_SECONDS: Final = 0.1
TARGET_FIRST_START_S: Final = 10.0
TARGET_CPU_SHARE: Final = 0.25
TARGET_RSS_MB: Final = 150.0
_STATE_DECODER: Final = msgspec.json.Decoder(LocalState)


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
    """Watches the bridge's state file for the streams whose first start is committed."""

    path: Path
    expected: int
    started: int = 0
    first_write: float | None = None  # seconds after the launch the state file first appeared

    async def follow(self, bridge: asyncio.subprocess.Process, launched: float) -> float:
        """Seconds from ``launched`` until every expected stream has started (bounded by ``STARTUP_TIMEOUT``)."""
        deadline = launched + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if bridge.returncode is not None:
                raise RuntimeError(f"the bridge ended with status {bridge.returncode} before every stream started")
            self.started = self._started_now(launched)
            if self.started >= self.expected:
                return time.monotonic() - launched
            await asyncio.sleep(STATE_POLL_SECONDS)
        raise RuntimeError(f"only {self.started} of {self.expected} streams started in {STARTUP_TIMEOUT:.0f} s")

    def _started_now(self, launched: float) -> int:
        try:
            state = _STATE_DECODER.decode(self.path.read_bytes())  # replaced atomically: always whole
        except FileNotFoundError:
            return 0
        if self.first_write is None:
            self.first_write = time.monotonic() - launched
        return sum(1 for checkpoint in state.streams.values() if not checkpoint.resumed_position().busy)


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
            watch = StartWatch(Path(scratch) / "state.json", projects)
            with (Path(scratch) / "bridge.log").open("wb") as log:
                launched = time.monotonic()
                bridge = await asyncio.create_subprocess_exec(*command, cwd=REPO, stderr=log)
                try:
                    startup = await watch.follow(bridge, launched)
                    await asyncio.sleep(settle)
                    written = _lines(Path(scratch) / "events.jsonl")
                    bridge_window, sim_window = await sample([bridge.pid, sim.process.pid], seconds)
                    written = _lines(Path(scratch) / "events.jsonl") - written
                finally:
                    await stop_process(bridge)
    table = _table(bridge_window, sim_window, projects, seconds, startup)
    table.notes.append(f"the state file first appeared {watch.first_write or 0:.1f} s after launch")
    table.notes.append(f"{written} events written during the window")
    return table


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


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
    first_start = f"first start of {projects} new streams, from launch"
    table.checks.append(Check(first_start, startup, TARGET_FIRST_START_S, unit="s"))
    table.notes.append(f"all {projects} streams started {startup:.1f} s after launch; {machine_load()}")
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
