"""The real ``borobridge run`` process against a simulator the test serves: its configuration, SIGKILLs, restarts.

The test keeps the simulator (ground truth) in its own process and serves it over real HTTP; the bridge is a
subprocess started, killed with SIGKILL at seeded random moments and started again on the same state, while a
:func:`moving_world` advances the simulated world (with bursts that overflow a page). Once the world stands
still the test waits, bounded, until the output holds every expected transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from borobridge.simulator import Simulator
from tests.support.expectations import assert_exactly_once_in_order

STOP_S = 30.0
PAGE_SIZE = 20
SWEPT = "the reconciliation sweep found record"
RESTORED = "stream checkpoints"  # "restored N of M stream checkpoints", once per start


def bridge_config(directory: Path, url: str, *, name: str = "borobridge", kafka: dict[str, Any] | None = None) -> Path:
    """A configuration for a busy bridge: short polls, pages of ``PAGE_SIZE``, a sweep every two seconds."""
    config: dict[str, Any] = {
        "name": name,
        "boro": {
            "url": url,
            "user_id": 4,
            "poll_interval": 0.2,
            "page_size": PAGE_SIZE,
            "retry": {"initial_backoff": 0.02, "max_backoff": 0.5},
        },
        "first_start": {"mode": "all"},
        "reconcile": {"interval": 2.0, "window": 60},
        "health": {"enabled": False},
    }
    if kafka is not None:
        config["kafka"] = kafka
    path = directory / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@dataclass
class WorldLog:
    """What the moving world did that a failure message should mention: the seconds each probe was stopped."""

    stopped: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))

    def note(self, sim: Simulator) -> None:
        second = int(sim.server_time())
        for probe in sim.probes():
            if not sim.probe_alive(probe.app_id):
                self.stopped[probe.app_id].update((second - 1, second))

    def hidden_tasks(self, sim: Simulator) -> set[int]:
        """The tasks of every probe that was stopped at some point."""
        return {task.task_id for task in sim.tasks() if task.app_id in self.stopped}

    def explain(self, sim: Simulator, missing: set[str]) -> str:
        """Missing transitions by circumstance: its probe stopped then, its second crowded (over a page)."""
        records = {record.id: record for record in sim.records()}
        crowded = Counter((change.project_id, change.updated_at) for change in sim.changes())
        kinds: Counter[str] = Counter()
        for transition in missing:
            record = records[int(transition.split("-")[0])]
            stopped = record.updated_at in self.stopped.get(record.alarm["app_id"], set())
            full = crowded[(record.project_id, record.updated_at)] > PAGE_SIZE
            kinds[f"probe {'stopped' if stopped else 'running'}, second {'crowded' if full else 'normal'}"] += 1
        return ", ".join(f"{count} with {kind}" for kind, count in sorted(kinds.items()))


@contextlib.asynccontextmanager
async def moving_world(
    sim: Simulator, rng: random.Random, *, every: float = 0.2, burst_chance: float = 0.04
) -> AsyncIterator[WorldLog]:
    """Advance ``sim`` every ``every`` seconds while the block runs, with a burst of 30-80 records now and then.

    The world stands still afterwards: no step, and no state clearing under a period listing
    (``Personality.moving_records``), so the ground truth stays put while the bridge catches up.
    ``serve_simulator(advance_every=...)`` would stop serving with the world.
    """

    world = WorldLog()

    async def tick() -> None:
        while True:
            await asyncio.sleep(every)
            sim.advance()
            if rng.random() < burst_chance:
                sim.burst(rng.randint(30, 80))
            world.note(sim)

    world.note(sim)
    task = asyncio.create_task(tick(), name="moving-world")
    try:
        yield world
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sim.personality = msgspec.structs.replace(sim.personality, moving_records=0.0)
        for probe in sim.probes():  # a probe stopped now would hide its tasks for good: every probe runs again
            sim.set_probe_alive(probe.app_id, True)


@dataclass
class BridgeProcess:
    """``python -m borobridge run`` with fixed arguments, its stderr appended to ``log`` across restarts."""

    args: list[str]
    log: Path
    cwd: Path
    kills: int = 0
    starts: int = 0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    async def start(self) -> None:
        assert self.process is None or self.process.returncode is not None, "the bridge is running already"
        with self.log.open("ab") as stderr:  # the child keeps its own descriptor
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "borobridge", "run", *self.args, cwd=self.cwd, stderr=stderr
            )
        self.starts += 1

    async def wait_restored(self, seconds: float = STOP_S) -> None:
        """Wait (bounded) until the latest start has restored its checkpoints: its clients are up."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self.said().count(RESTORED) < self.starts and asyncio.get_running_loop().time() < deadline:
            assert not self.ended, f"the bridge ended:\n{self.said()}"
            await asyncio.sleep(0.2)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever the bridge was doing."""
        process = self._running()
        process.kill()
        await process.wait()
        self.kills += 1

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL past ``STOP_S``; the exit status (None when it was never started)."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_S):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    @property
    def ended(self) -> bool:
        """True when the last started process exited by itself (or was never started)."""
        return self.process is None or self.process.returncode is not None

    def said(self) -> str:
        """Everything the bridge logged so far, every run."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def swept(self) -> int:
        """How many transitions the reconciliation sweep reported as missed by the token path."""
        return self.said().count(SWEPT)

    def _running(self) -> asyncio.subprocess.Process:
        assert self.process is not None, "the bridge was never started"
        assert self.process.returncode is None, f"the bridge ended:\n{self.said()}"
        return self.process


async def kill_at_random_moments(
    bridge: BridgeProcess, rng: random.Random, kills: int, *, life: tuple[float, float] = (1.5, 4.0)
) -> None:
    """Start the bridge, SIGKILL it after a random ``life`` (seconds), ``kills`` times; then leave one running."""
    for _ in range(kills):
        await bridge.start()
        await asyncio.sleep(rng.uniform(*life))
        await bridge.kill()
    await bridge.start()


async def wait_until_complete(
    read: Callable[[], Awaitable[set[str]]], expected: set[str], bridge: BridgeProcess, *, seconds: float
) -> None:
    """Poll ``read`` (every half second, at most ``seconds``) until it holds ``expected`` or the bridge ended."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline and not bridge.ended:
        if await read() >= expected:
            return
        await asyncio.sleep(0.5)


def ids_written(path: Path) -> set[str]:
    """The ids of the complete lines of a JSON-lines file a running bridge is appending to."""
    if not path.exists():
        return set()
    complete, _, _ = path.read_bytes().rpartition(b"\n")
    return {json.loads(line)["id"] for line in complete.splitlines() if line.strip()}


def assert_once_and_in_order(events: list[dict[str, Any]], sim: Simulator, expected: set[str], world: WorldLog) -> None:
    """Every expected transition once; per-task order for the tasks no stopped probe hid.

    A task first seen after its probe stopped is invisible to ``"*"`` meanwhile: its changes arrive once the probe
    runs again, through a period read or the reconciliation sweep, later than the task's other transitions.
    """
    hidden = world.hidden_tasks(sim)
    late = {event["id"] for event in events if event["data"]["alarm"]["task_id"] in hidden}
    assert_exactly_once_in_order([e for e in events if e["id"] not in late], sim, expected - late)
    assert len(events) == len({event["id"] for event in events}), "a transition was delivered twice"
    assert expected <= {event["id"] for event in events}
