"""High availability: how fast a SIGKILLed replica's shards are committed again by their new owner, and what
three replicas sharing many projects cost each, beside one replica holding a third of them.

``python -m bench.ha takeover [--kills N]``: three ``borobridge run`` replicas of one name on a real Kafka broker,
polling the simulator; N times, SIGKILL one replica and time from the kill to the first committed checkpoint record
of one of its shards written in a later group generation (checkpoint records name their owner's generation), seen
by a ``read_committed`` consumer tailing the checkpoint topic; then start it again and wait until the three share
the shards. Target: p99 within the group's session timeout plus two poll intervals.

``python -m bench.ha scale [--projects N] [--seconds S]``: N projects polled every 5 s by three replicas, then by one
replica holding a third of them (N/3 projects), CPU and resident memory per replica over S seconds, and the
TaskAlarms calls the simulator answered for each project in that window: a replica waiting on a saturated
simulator would look cheap, so the achieved poll rate is part of the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.doorbell import SteeredSimulator, steered_simulator
from bench.processes import REPO, kafka_broker, machine_load, read_process, simulator_process, stop_process
from bench.report import Check, Series, Table
from borobridge.kafka.group import SESSION_TIMEOUT_MS

REPLICAS: Final = 3
SHARDS: Final = 6
TAKEOVER_POLL_INTERVAL: Final = 0.5
SCALE_POLL_INTERVAL: Final = 5.0
SETTLE_TIMEOUT: Final = 90.0
TAKEOVER_TIMEOUT: Final = 60.0
TARGET_CPU_SHARE: Final = 0.25
TARGET_RSS_MB: Final = 300.0
OWNS: Final = re.compile(r"shard group generation (\d+): this process owns shards ([\d, ]+|none) of (\d+)")


def bridge_config(directory: Path, url: str, bootstrap: str, *, name: str, poll_interval: float) -> Path:
    """One configuration for every replica: Kafka delivery, every project of the simulator, one events topic."""
    config = {
        "name": name,
        "boro": {"url": url, "user_id": 4, "projects": "all", "poll_interval": poll_interval},
        "first_start": {"mode": "now"},
        "health": {"enabled": False},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": {
                "events": f"{name}.alarms",  # one topic: thousands of topics would measure the broker
                "active": f"{name}.active",
                "checkpoints": f"{name}.checkpoints",
                "schemas": f"{name}.schemas",
                "dead_letters": f"{name}.dlq",
                "partitions": SHARDS,
            },
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@dataclass
class Replica:
    """One ``borobridge run`` process, its log appended across restarts."""

    config: Path
    log: Path
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as stderr:
            command = [sys.executable, "-m", "borobridge", "run", "--config", str(self.config)]
            self.process = await asyncio.create_subprocess_exec(*command, cwd=REPO, stderr=stderr)

    def owned(self) -> tuple[int, set[int]]:
        found = OWNS.findall(self.log.read_text(encoding="utf-8", errors="replace")) if self.log.exists() else []
        if not found:
            return -1, set()
        generation, shards, _ = found[-1]
        return int(generation), set() if shards == "none" else {int(s) for s in shards.split(", ")}

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class Fleet:
    replicas: list[Replica] = field(default_factory=list)

    async def settled(self) -> int:
        """Wait until every replica was assigned in one generation and they own every shard once; the generation."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            latest = [replica.owned() for replica in self.replicas]
            generations = {generation for generation, _ in latest}
            shards = sorted(shard for _, mine in latest for shard in mine)
            if len(generations) == 1 and -1 not in generations and shards == list(range(SHARDS)):
                return generations.pop()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the replicas did not share the shards within {SETTLE_TIMEOUT:.0f} s")

    async def stop(self) -> None:
        for replica in self.replicas:
            if replica.process is not None:
                await stop_process(replica.process)


@contextlib.asynccontextmanager
async def fleet(config: Path, directory: Path, count: int) -> AsyncIterator[Fleet]:
    replicas = Fleet([Replica(config, directory / f"replica{index}.log") for index in range(count)])
    try:
        for replica in replicas.replicas:
            await replica.start()
        yield replicas
    finally:
        await replicas.stop()


class CheckpointTail:
    """A ``read_committed`` consumer of the checkpoint topic from its end: when each (shard, generation) first
    committed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
        )
        self._topic = topic
        self.first_commit: dict[tuple[int, int], float] = {}

    async def __aenter__(self) -> CheckpointTail:
        await self._consumer.start()
        partitions = [TopicPartition(self._topic, shard) for shard in range(SHARDS)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.sleep(0)
        await self._consumer.stop()

    async def wait_for(self, shards: set[int], after_generation: int, deadline: float) -> float:
        """The monotonic time the first of ``shards`` was committed in a generation after ``after_generation``."""
        while time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for partition, messages in batches.items():
                for message in messages:
                    generation = int(dict(message.headers).get("borobridge_generation", b"-1"))
                    self.first_commit.setdefault((partition.partition, generation), now)
            found = [at for (shard, gen), at in self.first_commit.items() if shard in shards and gen > after_generation]
            if found:
                return min(found)
        raise RuntimeError(f"no shard of {sorted(shards)} committed within {TAKEOVER_TIMEOUT:.0f} s of the kill")


async def measure_takeover(kills: int) -> Table:
    """SIGKILL a replica ``kills`` times; seconds from each kill to its shards' first commit by a new owner."""
    takeovers: list[float] = []
    with kafka_broker() as kafka, tempfile.TemporaryDirectory(prefix="bench-ha-") as scratch:
        options = ["--projects", "30", "--rate", "20", "--step", "0.1", "--retain", "600"]
        async with simulator_process(options) as sim:
            config = bridge_config(
                Path(scratch), sim.url, kafka.bootstrap, name="bench-ha", poll_interval=TAKEOVER_POLL_INTERVAL
            )
            async with fleet(config, Path(scratch), REPLICAS) as replicas:
                await replicas.settled()
                async with CheckpointTail(kafka.bootstrap, "bench-ha.checkpoints") as tail:
                    for kill in range(kills):
                        victim = replicas.replicas[kill % REPLICAS]
                        generation, shards = victim.owned()
                        await asyncio.sleep(2.0)  # a few rounds committed by every owner
                        killed = time.monotonic()
                        assert victim.process is not None
                        victim.process.send_signal(signal.SIGKILL)
                        await victim.process.wait()
                        committed = await tail.wait_for(shards, generation, killed + TAKEOVER_TIMEOUT)
                        takeovers.append(committed - killed)
                        print(f"kill {kill + 1}: shards {sorted(shards)} committed again after {takeovers[-1]:.2f} s")
                        await victim.start()
                        await replicas.settled()
    return _takeover_table(takeovers)


def _takeover_table(takeovers: list[float]) -> Table:
    session = SESSION_TIMEOUT_MS / 1000
    table = Table(f"takeover: SIGKILL of one of {REPLICAS} replicas, {len(takeovers)} kills, {SHARDS} shards")
    table.add(Series("kill to first commit by the new owner", "s", takeovers))
    quantiles = statistics.quantiles(takeovers, n=100, method="inclusive")
    table.checks.append(Check("takeover p99", quantiles[98], session + 2 * TAKEOVER_POLL_INTERVAL, unit="s"))
    table.notes.append(f"p50 {statistics.median(takeovers):.2f} s, p99 {quantiles[98]:.2f} s; {machine_load()}")
    table.notes.append(f"session timeout {session:g} s, poll interval {TAKEOVER_POLL_INTERVAL:g} s")
    return table


@dataclass
class Usage:
    cpu_share: list[float]
    rss_mb: list[float]


async def _usage(pids: list[int], seconds: float) -> list[Usage]:
    """CPU per wall second over ``seconds`` and peak resident memory of each process."""
    first = {pid: read_process(pid) for pid in pids}
    started = time.monotonic()
    peaks = {pid: first[pid].rss_bytes for pid in pids}
    while time.monotonic() - started < seconds:
        await asyncio.sleep(1.0)
        for pid in pids:
            peaks[pid] = max(peaks[pid], read_process(pid).rss_bytes)
    elapsed = time.monotonic() - started
    last = {pid: read_process(pid) for pid in pids}
    return [Usage([(last[pid].cpu_seconds - first[pid].cpu_seconds) / elapsed], [peaks[pid] / 2**20]) for pid in pids]


@dataclass(frozen=True)
class Polls:
    """TaskAlarms calls answered over a window: polls (token reads) in all, and of the least and the most polled
    project; other reads (pages, periods: the sweep, a history read, a start)."""

    polls: int
    fewest: int
    most: int
    reads: int


async def _take_polls(sim: SteeredSimulator) -> Polls:
    """The simulator's poll counts since the last time they were taken; they start again from here."""
    await sim.command("polls")
    polls, fewest, most, reads = (int(word) for word in (await sim.line("polls ")).split())
    return Polls(polls, fewest, most, reads)


@dataclass
class FleetUsage:
    replicas: list[Usage]
    simulator: Usage
    streams: list[int]  # streams opened by each replica (its log's "opened" lines)
    polls: Polls


async def _run_replicas(kafka_bootstrap: str, projects: int, count: int, seconds: float, name: str) -> FleetUsage:
    with tempfile.TemporaryDirectory(prefix="bench-ha-scale-") as scratch:
        options = ["--projects", str(projects), "--rate", str(projects / 50), "--step", "1.0", "--retain", "600"]
        async with steered_simulator(options) as sim:
            config = bridge_config(
                Path(scratch), sim.url, kafka_bootstrap, name=name, poll_interval=SCALE_POLL_INTERVAL
            )
            async with fleet(config, Path(scratch), count) as replicas:
                if count == REPLICAS:
                    await replicas.settled()
                await asyncio.sleep(3 * SCALE_POLL_INTERVAL)  # the first starts done, cycles at their pace
                await _take_polls(sim)
                *usages, simulator = await _usage([r.pid for r in replicas.replicas] + [sim.process.pid], seconds)
                polls = await _take_polls(sim)
                streams = [_opened(replica.log) for replica in replicas.replicas]
                for replica in replicas.replicas:
                    _print_warnings(replica.log)
                return FleetUsage(usages, simulator, streams, polls)


def _print_warnings(log: Path, last: int = 5) -> None:
    """The last warnings a replica logged, on stderr: a figure from a replica in trouble means little."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in [line for line in lines if " WARNING " in line or " ERROR " in line][-last:]:
        print(f"{log.name}: {line}", file=sys.stderr)


def _opened(log: Path) -> int:
    return sum(1 for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if " opened at " in line)


async def measure_scale(projects: int, seconds: float) -> Table:
    with kafka_broker() as kafka:
        shared = await _run_replicas(kafka.bootstrap, projects, REPLICAS, seconds, "bench-ha-three")
        alone = await _run_replicas(kafka.bootstrap, projects // REPLICAS, 1, seconds, "bench-ha-one")
    table = Table(
        f"scale: {projects} projects over {REPLICAS} replicas vs {projects // REPLICAS} on one, {seconds:.0f} s"
    )
    for index, usage in enumerate(shared.replicas):
        table.add(Series(f"replica {index} of {REPLICAS}: CPU", "% of core", [100 * s for s in usage.cpu_share]))
        table.add(Series(f"replica {index} of {REPLICAS}: peak RSS", "MiB", usage.rss_mb))
    table.add(Series(f"simulator, {projects} projects: CPU", "% of core", [100 * shared.simulator.cpu_share[0]]))
    one = alone.replicas[0]
    table.add(Series(f"one replica, {projects // REPLICAS} projects: CPU", "% of core", [100 * one.cpu_share[0]]))
    table.add(Series(f"one replica, {projects // REPLICAS} projects: peak RSS", "MiB", one.rss_mb))
    table.add(
        Series(f"simulator, {projects // REPLICAS} projects: CPU", "% of core", [100 * alone.simulator.cpu_share[0]])
    )
    worst_cpu = max(usage.cpu_share[0] for usage in shared.replicas)
    worst_rss = max(usage.rss_mb[0] for usage in shared.replicas)
    table.notes.append(f"streams opened per replica: {shared.streams}; by the one replica: {alone.streams}")
    table.checks.append(Check("busiest replica CPU", 100 * worst_cpu, 100 * TARGET_CPU_SHARE, unit="% of a core"))
    table.checks.append(Check("largest replica peak RSS", worst_rss, TARGET_RSS_MB, unit="MiB"))
    _add_polls(table, shared.polls, projects, seconds, f"{projects} over {REPLICAS}")
    _add_polls(table, alone.polls, projects // REPLICAS, seconds, f"{projects // REPLICAS} on one")
    table.notes.append(machine_load())
    return table


def _add_polls(table: Table, polls: Polls, projects: int, seconds: float, run: str) -> None:
    """Token reads per project per poll interval, other reads per second, and a check that the least polled
    project missed at most the one interval a window that does not start on a cycle's start may cut."""
    intervals = seconds / SCALE_POLL_INTERVAL
    table.add(Series(f"{run}: polls per project per 5 s, mean", "calls", [polls.polls / projects / intervals]))
    table.add(Series(f"{run}: polls per 5 s, least polled", "calls", [polls.fewest / intervals]))
    table.add(Series(f"{run}: polls per 5 s, most polled", "calls", [polls.most / intervals]))
    table.add(Series(f"{run}: other TaskAlarms reads", "calls/s", [polls.reads / seconds]))
    expected = math.floor(intervals) - 1
    table.checks.append(
        Check(
            f"{run}: polls of the least polled project in {seconds:g} s",
            polls.fewest,
            expected,
            better="higher",
            unit="calls",
        )
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.ha takeover|scale``."""
    parser = argparse.ArgumentParser(description="takeover time and per-replica cost of the shard group")
    commands = parser.add_subparsers(dest="command", required=True)
    takeover = commands.add_parser("takeover")
    takeover.add_argument("--kills", type=int, default=10)
    scale = commands.add_parser("scale")
    scale.add_argument("--projects", type=int, default=10_000)
    scale.add_argument("--seconds", type=float, default=60.0)
    options = parser.parse_args(argv)
    if options.command == "takeover":
        asyncio.run(measure_takeover(options.kills)).print()
    else:
        asyncio.run(measure_scale(options.projects, options.seconds)).print()


if __name__ == "__main__":
    main()
