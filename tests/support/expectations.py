"""What the bridge must have emitted for a simulated world, and checks of an output against it."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from borobridge.schemas import event_schema
from borobridge.simulator import Simulator
from borobridge.transitions import Transition


def expected_ids(sim: Simulator, since: int = 0) -> set[str]:
    """Every transition id a bridge that read the whole world (changes at or after ``since``) must emit."""
    ids: set[str] = set()
    for stored in sim.records():
        alarm = stored.alarm
        if stored.updated_at < since:
            continue
        if alarm["type"] == "event":
            ids.add(f"{alarm['id']}-event")
        else:
            ids.add(f"{alarm['id']}-raised")
            if not alarm["active"]:
                ids.add(f"{alarm['id']}-cleared")
    return ids


def read_events(path: Path) -> list[dict[str, Any]]:
    """The structured CloudEvents of a JSON-lines file; a torn last line fails the test."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_exactly_once_in_order(events: list[dict[str, Any]], sim: Simulator, expected: Iterable[str]) -> None:
    """Each expected transition once (by source + id), nothing else, raise before clear, tasks in Boro's order."""
    keys = Counter((event["source"], event["id"]) for event in events)
    repeated = [key for key, count in keys.items() if count > 1]
    assert not repeated, f"{len(repeated)} transitions emitted twice, e.g. {repeated[:3]}"
    emitted = {event["id"] for event in events}
    missing = set(expected) - emitted
    assert not missing, f"{len(missing)} transitions never emitted, e.g. {sorted(missing)[:5]}" + _history(
        sim, {int(i.split("-")[0]) for i in sorted(missing)[:3]}
    )
    assert emitted <= set(expected), f"unexpected transitions {sorted(emitted - set(expected))[:5]}"
    assert_raise_before_clear(events)
    _assert_task_order(events, sim)


def assert_valid_against_schemas(events: list[dict[str, Any]]) -> None:
    """Every event's data validates against the schema its ``dataschema`` names."""
    schemas = {kind: event_schema(kind) for kind in Transition}
    for event in events:
        kind = Transition(event["data"]["transition"])
        assert event["dataschema"] == schemas[kind]["$id"]
        jsonschema.validate(event["data"], schemas[kind])


def assert_raise_before_clear(events: list[dict[str, Any]]) -> None:
    """Each ``cleared`` comes after the ``raised`` of the same record."""
    position = {event["id"]: index for index, event in enumerate(events)}
    for event in events:
        if event["data"]["transition"] == "cleared":
            record_id = event["id"].removesuffix("-cleared")
            assert position[f"{record_id}-raised"] < position[event["id"]], f"{record_id} cleared before raised"


def _assert_task_order(events: list[dict[str, Any]], sim: Simulator) -> None:
    """Per task, the Boro time of each transition (creation or clearing) never goes backwards."""
    changed_at: dict[tuple[int, str], int] = {(c.record_id, c.transition): c.updated_at for c in sim.changes()}
    last: dict[str, int] = defaultdict(int)
    for event in events:
        data = event["data"]
        record_id = data["alarm"]["id"]
        at_clear = data["transition"] == "cleared" or data.get("synthetic", False)
        when = changed_at[(record_id, "cleared" if at_clear else "created")]
        task = event["partitionkey"]
        assert when >= last[task], f"task {task}: {event['id']} at {when} after a transition at {last[task]}" + (
            _emitted_history(events, task, changed_at)
        )
        last[task] = when


def _history(sim: Simulator, record_ids: set[int]) -> str:
    """The simulator's changes of these records, to explain a failed check."""
    changes = [c for c in sim.changes() if c.record_id in record_ids]
    return "\nchanges: " + "; ".join(f"{c.record_id} {c.transition} at {c.updated_at} seq {c.seq}" for c in changes)


def _emitted_history(events: list[dict[str, Any]], task: str, changed_at: Mapping[tuple[int, str], int]) -> str:
    """One task's transitions in the order they were emitted, with the Boro time of each change."""
    lines = []
    for event in events:
        if event["partitionkey"] != task:
            continue
        data = event["data"]
        at_clear = data["transition"] == "cleared" or data.get("synthetic", False)
        lines.append(f"{event['id']}@{changed_at[(data['alarm']['id'], 'cleared' if at_clear else 'created')]}")
    return "\nemitted for the task: " + ", ".join(lines)


class LaggingClock:
    """Real time minus ``lag`` seconds: a simulator built on it can be given a past before a test starts."""

    def __init__(self, lag: float) -> None:
        self.lag = lag

    def __call__(self) -> float:
        return time.time() - self.lag


def simulator_with_history(seconds: float, **options: Any) -> Simulator:
    """A simulator whose world has already run for ``seconds`` up to now."""
    clock = LaggingClock(seconds)
    sim = Simulator(clock=clock, **options)
    clock.lag = 0.0
    sim.advance()
    return sim
