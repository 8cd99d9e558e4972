"""Replies that answer another question than the one asked, or carry a token no Boro could send, are refused whole:
nothing of them is published and the cursor stays.

Boro is the simulator over ``httpx.MockTransport``; a :class:`Mangler` alters its TaskAlarms replies the way a
misbehaving server or proxy could (records of another project or task, reply items without or with foreign ids, a
token in milliseconds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.simulator import Simulator, as_mock_transport_handler
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, read_events, simulator_with_history
from tests.support.settings import SIMULATED_BORO, bridge_settings

PROJECT = 23
OTHER_PROJECT = 24
CHOSEN_TASKS = (241555, 241556, 241557)
UNCHOSEN_TASK = 241558  # also of project 23
Reply = list[dict[str, Any]]
Alteration = Callable[[Reply, dict[int, dict[str, Any]]], set[int]]


class Mangler:
    """The simulator's answers, TaskAlarms replies passed through ``alter`` while it is set.

    ``alter`` gets the reply items and the calls by id, changes the items in place and returns the ids of the
    records in what it changed: none of them may reach the output.
    """

    def __init__(self, sim: Simulator) -> None:
        self._answer = as_mock_transport_handler(sim)
        self.alter: Alteration | None = None
        self.altered: set[int] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self._answer(request)
        calls = {call["id"]: call for call in json.loads(request.content)["methods"]}
        if self.alter is None or response.status_code != 200 or "TaskAlarms" not in _methods(calls):
            return response
        body = json.loads(response.content)
        self.altered |= self.alter(body["reply"], calls)
        return httpx.Response(200, json=body)


def _methods(calls: dict[int, dict[str, Any]]) -> set[str]:
    return {call["method"] for call in calls.values()}


def _records_of(reply: Reply) -> set[int]:
    return {alarm["id"] for item in reply for alarm in item.get("result", {}).get("alarms", [])}


def _project_pages(reply: Reply, calls: dict[int, dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The record lists of the pages answering calls for PROJECT that hold records."""
    return [
        item["result"]["alarms"]
        for item in reply
        if calls[item["id"]]["params"]["project_id"] == PROJECT and item.get("result", {}).get("alarms")
    ]


def other_project_record(reply: Reply, calls: dict[int, dict[str, Any]]) -> set[int]:
    altered: set[int] = set()
    for alarms in _project_pages(reply, calls):
        alarms[-1]["project_id"] = OTHER_PROJECT
        altered |= {alarm["id"] for alarm in alarms}
    return altered


def unchosen_task_record(reply: Reply, calls: dict[int, dict[str, Any]]) -> set[int]:
    altered: set[int] = set()
    for alarms in _project_pages(reply, calls):
        alarms[-1]["task_id"] = UNCHOSEN_TASK
        altered |= {alarm["id"] for alarm in alarms}
    return altered


def no_item_ids(reply: Reply, _: dict[int, dict[str, Any]]) -> set[int]:
    for item in reply:
        del item["id"]
    return _records_of(reply)


def foreign_item_ids(reply: Reply, _: dict[int, dict[str, Any]]) -> set[int]:
    for item in reply:
        item["id"] += 100
    return _records_of(reply)


def pipeline_for(tmp_path: Path, handler: Mangler, metrics: Metrics, **overrides: str) -> tuple[Pipeline, Any]:
    settings = bridge_settings(SIMULATED_BORO, tmp_path, **overrides)
    assert settings.output.path is not None
    sink = JsonLinesSink(FileCheckpointStore(Path(settings.state.path)), Path(settings.output.path))
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    pipeline = Pipeline(BoroClient(http, settings.boro), sink, settings, server_name="boro-test", metrics=metrics)
    return pipeline, sink


def record_ids(events: list[dict[str, Any]]) -> set[int]:
    return {event["data"]["alarm"]["id"] for event in events}


def of_project(stream_id: str) -> bool:
    return stream_id.split("/")[1] == str(PROJECT)


async def run_refusal(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    alter: Alteration,
    message: str,
    *,
    whole_reply: bool,
    **overrides: str,
) -> tuple[Simulator, list[dict[str, Any]], Metrics]:
    """Catch up, let the world move, read it through ``alter`` (refused), then unaltered (delivered)."""
    sim = simulator_with_history(10, seed=5, projects=2, rate_per_second=20)
    mangler = Mangler(sim)
    metrics = Metrics()
    pipeline, sink = pipeline_for(tmp_path, mangler, metrics, BOROBRIDGE_BORO__PROJECTS="[23, 24]", **overrides)
    output, state = tmp_path / "events.jsonl", tmp_path / "state.json"
    try:
        await pipeline.restore()
        await pipeline.poll_once()
        tokens = {stream.id: stream.token for stream in pipeline.streams if of_project(stream.id)}
        written, saved = output.read_bytes(), state.read_bytes()
        sim.advance(new_records=40)
        mangler.alter = alter
        with caplog.at_level(logging.WARNING):
            await pipeline.poll_once()
        assert mangler.altered, "the alteration found nothing to alter"
        assert message in caplog.text
        new_events = output.read_bytes()[len(written) :].decode()
        assert record_ids([json.loads(line) for line in new_events.splitlines()]).isdisjoint(mangler.altered)
        assert {s.id: s.token for s in pipeline.streams if of_project(s.id)} == tokens
        if whole_reply:
            assert (output.read_bytes(), state.read_bytes()) == (written, saved)
        mangler.alter = None
        for _ in range(10):
            await pipeline.poll_once()
            if record_ids(read_events(output)) >= mangler.altered:
                break
    finally:
        sink.close()
    return sim, read_events(output), metrics


@pytest.mark.parametrize(
    ("alter", "message", "overrides"),
    [
        (other_project_record, "belongs to project 24, the call asked for project 23", {}),
        (
            unchosen_task_record,
            f"is of task {UNCHOSEN_TASK}, the call asked for tasks",
            {"BOROBRIDGE_BORO__TASK_IDS": json.dumps(list(CHOSEN_TASKS))},
        ),
    ],
)
async def test_a_page_with_a_record_nobody_asked_for_is_refused_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, alter: Alteration, message: str, overrides: dict[str, str]
) -> None:
    sim, events, metrics = await run_refusal(tmp_path, caplog, alter, message, whole_reply=False, **overrides)
    assert (metrics.registry.get_sample_value("borobridge_errors_total", {"kind": "boro_reply"}) or 0) >= 1
    wanted = {
        key
        for key in expected_ids(sim)
        if overrides == {} or sim.record(int(key.split("-")[0])).alarm["task_id"] in CHOSEN_TASKS
    }
    assert_exactly_once_in_order(events, sim, wanted)


@pytest.mark.parametrize(
    ("alter", "message"),
    [
        (no_item_ids, "reply items without an id"),
        (foreign_item_ids, "match no call of this request"),
    ],
)
async def test_reply_items_that_match_no_call_refuse_the_whole_reply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, alter: Alteration, message: str
) -> None:
    sim, events, metrics = await run_refusal(tmp_path, caplog, alter, message, whole_reply=True)
    assert (metrics.registry.get_sample_value("borobridge_errors_total", {"kind": "boro_reply"}) or 0) >= 2
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


def millisecond_token(reply: Reply, calls: dict[int, dict[str, Any]]) -> set[int]:
    """The token of each answer for PROJECT in milliseconds, as a server counting in them would send it."""
    altered: set[int] = set()
    for item in reply:
        if calls[item["id"]]["params"]["project_id"] == PROJECT and "result" in item:
            item["result"]["update_token"] = MILLISECOND_TOKEN
            altered |= {alarm["id"] for alarm in item["result"]["alarms"]}
    return altered


MILLISECOND_TOKEN = 1_590_592_944_000


async def test_a_token_no_boro_could_send_is_refused_by_name_and_the_cursor_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    message = f"update_token {MILLISECOND_TOKEN} is not a plausible token"
    sim, events, metrics = await run_refusal(tmp_path, caplog, millisecond_token, message, whole_reply=False)
    assert (metrics.registry.get_sample_value("borobridge_errors_total", {"kind": "boro_reply"}) or 0) >= 1
    assert_exactly_once_in_order(events, sim, expected_ids(sim))
