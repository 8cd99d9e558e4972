"""Simulated Boro input the bridge must refuse: poison records and permanent refusals."""

from __future__ import annotations

from typing import Any

from borobridge.simulator import Simulator, StoredRecord
from tests.support.expectations import simulator_with_history


def poison(sim: Simulator, name: str, *, clear: bool = False, **fields: Any) -> StoredRecord:
    """A record Boro could send by mistake: raised now on the first task (and cleared), then given ``fields``."""
    stored = sim.trigger(sim.tasks()[0].task_id, name)
    if clear:
        sim.clear(stored.id)
    alarm = sim._store.get(stored.id).alarm
    for key, value in fields.items():
        if key.startswith("info."):
            alarm.info[key.removeprefix("info.")] = value
        else:
            setattr(alarm, key, value)
    return sim.record(stored.id)


def refusing(kind: str) -> tuple[Simulator, dict[str, str], str]:
    """A simulator, settings overrides and an URL suffix that make Boro refuse the bridge for good."""
    sim = simulator_with_history(2, seed=6, rate_per_second=5)
    overrides = {"BOROBRIDGE_BORO__PROJECTS": "[23, 24]"}
    if kind == "user_id":
        overrides["BOROBRIDGE_BORO__USER_ID"] = "5"
    if kind == "user_id_discovery":
        overrides = {"BOROBRIDGE_BORO__USER_ID": "5"}
    if kind == "hmac":
        sim = simulator_with_history(2, seed=6, rate_per_second=5, hmac_keys={"4": b"k" * 32})
    return sim, overrides, "/v2" if kind == "path" else ""
