"""What the simulator's answers cost: one project's call reads that project, never the whole world."""

from __future__ import annotations

from typing import Any, NoReturn

import msgspec

from borobridge.simulator import ENDPOINT_PATH, Simulator

PROJECTS = 300
BATCH = 50


class _NoScan(dict[int, Any]):
    """The world's probes, tasks or records by id, refusing to be read whole: a call that scans them fails."""

    def _scan(self) -> NoReturn:
        raise AssertionError("one project's call read every probe, task or record of the world")

    def keys(self) -> NoReturn:
        self._scan()

    def values(self) -> NoReturn:
        self._scan()

    def items(self) -> NoReturn:
        self._scan()

    def __iter__(self) -> NoReturn:
        self._scan()


def _post(sim: Simulator, methods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = msgspec.json.encode({"user_id": sim.user_id, "methods": methods})
    reply = sim.handle("POST", ENDPOINT_PATH, {}, body)
    assert reply.status == 200, reply.body
    items: list[dict[str, Any]] = msgspec.json.decode(reply.body)["reply"]
    assert all("result" in item for item in items), items
    return items


def _discover(sim: Simulator) -> list[int]:
    ids: list[int] = []
    for page in range(1, PROJECTS // 100 + 1):
        [item] = _post(sim, [{"method": "ProjectsList", "params": {"type": "all", "limit_value": 100, "page": page}}])
        ids += [project["id"] for project in item["result"]["projects"]]
    return ids


def _poll_all(sim: Simulator, ids: list[int]) -> int:
    alarms = 0
    for start in range(0, len(ids), BATCH):
        params = [{"project_id": pid, "task_ids": "*", "limit_value": 100} for pid in ids[start : start + BATCH]]
        items = _post(sim, [{"method": "TaskAlarms", "id": n, "params": p} for n, p in enumerate(params, 1)])
        alarms += sum(len(item["result"]["alarms"]) for item in items)
    return alarms


def test_a_discovery_and_a_poll_of_every_project_never_read_the_whole_world() -> None:
    """Scanning every task per call made 10,000 projects cost O(projects²) a round (BENCHMARKS.md 7.2)."""
    now = 1_700_000_000.0
    sim = Simulator(projects=PROJECTS, rate_per_second=PROJECTS / 50, retain_seconds=600, clock=lambda: now)
    sim.advance(now + 60)
    records = len(sim.records())
    sim._tasks = _NoScan(sim._tasks)
    sim._probes = _NoScan(sim._probes)
    sim._store._entries = _NoScan(sim._store._entries)
    ids = _discover(sim)
    assert sorted(ids) == sorted(project.id for project in sim.projects())
    assert _poll_all(sim, ids) == records
