"""Property: for any seeded scenario and any mix of faults, token polling plus deduplication sees every change once.

Polling is done as the pipeline does it: drain while pages are full, and when a full page does not move the token
(timestamp tokens with more than a page of records in one second), read by period from the page's oldest record.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Literal

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borobridge.boro.backfill import backfill
from borobridge.boro.client import BoroClient
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.boro.simulator import Faults, Simulator
from borobridge.boro.simulator_http import as_mock_transport_handler
from borobridge.errors import BoroError
from borobridge.settings import BoroSettings, RetrySettings
from borobridge.transitions import TransitionMemory
from tests.expectations import expected_ids

faults = st.builds(
    Faults,
    http_5xx=st.sampled_from([0.0, 0.2]),
    malformed=st.sampled_from([0.0, 0.2]),
    error_item=st.sampled_from([0.0, 0.2]),
    repeat=st.sampled_from([0.0, 0.5]),
    burst=st.sampled_from([0.0, 0.2]),
)


async def no_sleep(_: float) -> None:
    return None


class ManualClock:
    """Simulated time that moves only when the test says so."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def poll_everything(sim: Simulator, clock: ManualClock, rounds: int) -> list[str]:
    """Advance the world a second a round and poll it with tokens; returns the transition ids let through."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(as_mock_transport_handler(sim)))
    options = BoroSettings(
        url="http://boro.test/ctrl_api/v1/json", user_id=4, retry=RetrySettings(max_drain_requests=500)
    )
    client = BoroClient(http, options, sleep=no_sleep)
    queries = {p.id: AlarmQuery(project_id=p.id, update_token=0) for p in sim.projects()}
    memories = {project: TransitionMemory() for project in queries}
    emitted: list[str] = []
    for step in range(rounds + 20):  # the last rounds let the world stand still until everything is read
        if step < rounds:
            clock.now += 1.0
            sim.advance()
        async for round_ in client.drain(list(queries.values())):
            for query, result in round_:
                if not isinstance(result, AlarmPage):
                    continue
                memory = memories[query.project_id]
                if result.full and result.update_token == query.update_token:
                    queries[query.project_id] = await catch_up(
                        client, query, result, memory, emitted=emitted, now=int(clock.now)
                    )
                    continue
                emitted += [f"{t.record.id}-{t.kind.value}" for t in memory.feed(result.records)]
                queries[query.project_id] = query.after(result.update_token)
    await http.aclose()
    return emitted


async def catch_up(
    client: BoroClient, query: AlarmQuery, stuck: AlarmPage, memory: TransitionMemory, *, emitted: list[str], now: int
) -> AlarmQuery:
    """What the pipeline does when a full page does not move the token: a fresh token, then read by period,
    resuming after the last page read when Boro fails midway (the pipeline commits that point each page)."""
    [probe] = await client.task_alarms([replace(query, limit=1, update_token=None)])
    if not isinstance(probe, AlarmPage):
        return query  # Boro failed: the next round finds the same stuck page and tries again
    resume: int | None = min(item.record.trigger_time for item in stuck.records)
    for _ in range(100):
        if resume is None:
            return query.after(probe.update_token)
        try:
            async for step in backfill(client, replace(query, update_token=None), resume, now):
                emitted += [f"{t.record.id}-{t.kind.value}" for t in memory.feed(step.page.records)]
                resume = step.resume_from
        except BoroError:
            continue
    return query


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    token_mode=st.sampled_from(["sequence", "timestamp"]),
    faults=faults,
    rounds=st.integers(1, 12),
)
def test_token_polling_with_dedup_sees_every_change_once(
    seed: int, token_mode: Literal["sequence", "timestamp"], faults: Faults, rounds: int
) -> None:
    clock = ManualClock(1_790_000_000.0)
    sim = Simulator(seed=seed, projects=2, rate_per_second=15, token_mode=token_mode, faults=faults, clock=clock)
    emitted = asyncio.run(poll_everything(sim, clock, rounds))
    assert len(emitted) > 0
    assert len(emitted) == len(set(emitted)), "a change was emitted twice"
    assert set(emitted) == expected_ids(sim)
