"""A large first start through the real ``borobridge run``: twenty projects' histories never hide live alarms.

The test serves the simulator (ground truth: a world with a few hundred records per project, standing still but
for what the test raises) over real HTTP and runs the bridge as a subprocess with ``first_start.mode: all``,
JSON lines in a file and a small ``boro.retry.max_drain_requests``, so that the histories take many cycles.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from borobridge.simulator import Simulator, serve_simulator
from tests.support.bridge_process import BridgeProcess, wait_until_complete
from tests.support.expectations import assert_raise_before_clear, expected_ids, simulator_with_history
from tests.support.followed_output import OutputFollower, backfill_remaining
from tests.support.ports import free_port

PROJECTS: Final = 20
HISTORY_SECONDS: Final = 300  # the world's past before the bridge starts
RATE: Final = 27.0  # records per second in that past: about 400 per project
PAGE_SIZE: Final = 5
MAX_DRAIN_REQUESTS: Final = 4  # requests per cycle: a history read takes many cycles
POLL_INTERVAL: Final = 1.0
SLACK: Final = 1.5  # seconds a loaded machine may add to one poll interval
OPENED_S: Final = 30.0
COMPLETE_S: Final = 180.0
HISTORY_OPENED: Final = "reading history from"
HISTORY_DONE: Final = "history read up to the live alarms"
ADVICE: Final = "first_start.history: beside delivers them at once"


def first_start_config(directory: Path, url: str, health_port: int, *, history: str) -> Path:
    """A bridge that reads every project's whole history on its first start, in pages of ``PAGE_SIZE``."""
    config: dict[str, Any] = {
        "boro": {
            "url": url,
            "user_id": 4,
            "poll_interval": POLL_INTERVAL,
            "page_size": PAGE_SIZE,
            "retry": {"initial_backoff": 0.02, "max_backoff": 0.5, "max_drain_requests": MAX_DRAIN_REQUESTS},
        },
        "first_start": {"mode": "all", "history": history},
        "output": {"path": str(directory / "events.jsonl")},
        "state": {"path": str(directory / "state.json")},
        "health": {"host": "127.0.0.1", "port": health_port},
    }
    path = directory / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def raise_one_alarm_per_project(sim: Simulator) -> set[str]:
    """A new alarm on the first task of every project, now; their ``raised`` ids."""
    return {f"{sim.trigger(sim.tasks(p.id)[0].task_id, 'IatError').id}-raised" for p in sim.projects()}


async def wait_for_lines(bridge: BridgeProcess, text: str, count: int, seconds: float) -> None:
    """Wait (bounded) until the bridge logged ``text`` ``count`` times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while bridge.said().count(text) < count:
        assert not bridge.ended, f"the bridge ended:\n{bridge.said()}"
        assert loop.time() < deadline, f"{text!r} not logged {count} times within {seconds:g} s:\n{bridge.said()}"
        await asyncio.sleep(0.05)


async def until_delivered(output: OutputFollower, ids: set[str], bridge: BridgeProcess, within: float) -> None:
    """Wait until the output holds every one of ``ids``; fail once ``within`` seconds have passed without."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while missing := ids - output.ids():
        assert not bridge.ended, f"the bridge ended:\n{bridge.said()}"
        waited = f"{within:g} s after they were raised"
        assert loop.time() < deadline, f"{len(missing)} of {len(ids)} projects' live alarms still wait {waited}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_every_projects_live_alarm_flows_within_a_poll_interval_while_twenty_histories_are_read(
    tmp_path: Path,
) -> None:
    sim = simulator_with_history(HISTORY_SECONDS, seed=5, projects=PROJECTS, rate_per_second=RATE)
    assert min(len([r for r in sim.records() if r.project_id == p.id]) for p in sim.projects()) > 200
    port = free_port()
    output = OutputFollower(tmp_path / "events.jsonl")
    async with serve_simulator(sim) as url, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as health:
        config = first_start_config(tmp_path, url, port, history="beside")
        bridge = BridgeProcess(["--config", str(config)], tmp_path / "bridge.log", tmp_path)
        try:
            await bridge.start()
            await wait_for_lines(bridge, HISTORY_OPENED, PROJECTS, OPENED_S)
            live = raise_one_alarm_per_project(sim)
            await until_delivered(output, live, bridge, within=POLL_INTERVAL + SLACK)
            remaining = await backfill_remaining(health)
            await wait_until_complete(output.read_ids, expected_ids(sim), bridge, seconds=COMPLETE_S)
            await wait_for_lines(bridge, HISTORY_DONE, PROJECTS, COMPLETE_S)  # a last read may find nothing new
            finished = await backfill_remaining(health)
        finally:
            await bridge.stop()
    assert len(remaining) == PROJECTS
    still_reading = [stream for stream, seconds in remaining.items() if seconds > 0]
    assert still_reading, "every history was read before the live alarms came: the test proved nothing"
    events = output.events()
    counts = Counter(event["id"] for event in events)
    assert [i for i, n in counts.items() if n > 1] == [], "a transition was delivered twice"
    assert set(counts) == expected_ids(sim)
    assert_raise_before_clear(events)  # whichever lane read a state
    assert set(finished.values()) == {0.0}
    assert bridge.said().count(HISTORY_DONE) == PROJECTS
    assert ADVICE not in bridge.said()


async def test_a_first_start_reading_history_first_says_once_what_live_alarms_wait_for(tmp_path: Path) -> None:
    projects = 3
    sim = simulator_with_history(60, seed=6, projects=projects, rate_per_second=RATE)
    async with serve_simulator(sim) as url:
        config = first_start_config(tmp_path, url, free_port(), history="first")
        bridge = BridgeProcess(["--config", str(config)], tmp_path / "bridge.log", tmp_path)
        try:
            await bridge.start()
            await wait_for_lines(bridge, HISTORY_OPENED, projects, OPENED_S)
        finally:
            await bridge.stop()
    said = bridge.said()
    assert said.count(f"{HISTORY_OPENED} ") == said.count("before the live alarms") == projects
    assert said.count(ADVICE) == 1, said
    assert "first_start.mode all with first_start.history first" in said
