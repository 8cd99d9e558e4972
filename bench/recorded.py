"""TaskAlarms replies recorded from the simulator: the exact bytes a Boro server sends, poll after poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from borobridge.boro.queries import AlarmQuery
from borobridge.simulator import ENDPOINT_PATH, Simulator

USER_ID: Final = 4
START: Final = 1_790_000_000.0
SECONDS_PER_ROUND: Final = 2.0


@dataclass(frozen=True)
class RecordedReply:
    """One batched TaskAlarms request (its calls and queries) and the reply body the simulator gave."""

    queries: list[AlarmQuery]
    calls: list[tuple[str, dict[str, Any]]]
    body: bytes
    alarms: int


class _Clock:
    """A clock the recording moves by hand, so the same seed records the same bytes."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def record_replies(
    *, projects: int, rounds: int, records_per_round: int, seed: int = 7, probes_per_project: int = 2
) -> list[RecordedReply]:
    """Poll a simulated world ``rounds`` times, each after ``records_per_round`` new records (states clear too);
    each project has ``probes_per_project`` probes of three tasks."""
    clock = _Clock()
    sim = Simulator(
        seed=seed,
        projects=projects,
        probes_per_project=probes_per_project,
        rate_per_second=0,
        mean_state_seconds=6.0,
        clock=clock,
    )
    tokens: dict[int, int | float] = {project.id: sim.current_token() for project in sim.projects()}
    replies = []
    for _ in range(rounds):
        clock.now += SECONDS_PER_ROUND
        sim.advance(new_records=records_per_round)
        reply = _poll(sim, tokens)
        replies.append(reply)
        tokens |= _new_tokens(reply)
    return replies


def _poll(sim: Simulator, tokens: dict[int, int | float]) -> RecordedReply:
    queries = [AlarmQuery(project_id=project, update_token=token) for project, token in tokens.items()]
    calls = [("TaskAlarms", query.params()) for query in queries]
    methods = [{"method": method, "id": i, "params": params} for i, (method, params) in enumerate(calls, 1)]
    request = {"user_id": USER_ID, "methods": methods}
    body = sim.handle("POST", ENDPOINT_PATH, {}, msgspec.json.encode(request)).body
    alarms = sum(len(item["result"]["alarms"]) for item in msgspec.json.decode(body)["reply"])
    return RecordedReply(queries, calls, body, alarms)


def _new_tokens(reply: RecordedReply) -> dict[int, int | float]:
    items = msgspec.json.decode(reply.body)["reply"]
    return {query.project_id: item["result"]["update_token"] for query, item in zip(reply.queries, items, strict=True)}
