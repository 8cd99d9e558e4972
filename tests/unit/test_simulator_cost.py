"""What the simulator's answers cost: one project's call reads that project, never the whole world."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from borobridge.simulator import ENDPOINT_PATH, Simulator

PROJECTS = 3_000
BATCH = 50
CPU_BUDGET = 0.5  # seconds; reading the whole world per call took 1.6 s here, the per-project index 0.05 s


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


def test_a_discovery_and_a_poll_of_every_project_cost_little_in_a_large_world() -> None:
    now = 1_700_000_000.0
    sim = Simulator(projects=PROJECTS, rate_per_second=PROJECTS / 50, retain_seconds=600, clock=lambda: now)
    sim.advance(now + 60)
    started = time.process_time()
    ids = _discover(sim)
    alarms = _poll_all(sim, ids)
    spent = time.process_time() - started
    assert sorted(ids) == sorted(project.id for project in sim.projects())
    assert alarms == len(sim.records())
    assert spent < CPU_BUDGET, f"{spent:.2f} CPU s for a discovery and one poll of {PROJECTS} projects"
