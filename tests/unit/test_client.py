"""The Boro client on httpx.MockTransport: batching, every failure shape, signing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from borobridge.boro import hmac_auth
from borobridge.boro.client import BoroClient, Signer
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.errors import BoroDecodeError, BoroHTTPError, BoroReplyError, BoroTransportError
from borobridge.settings import BoroSettings, FilterSettings, RetrySettings
from tests.support.records import record_bytes

URL = "http://boro.test/ctrl_api/v1/json"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a function and keeps every request body."""

    def __init__(self, answer: Callable[[dict[str, Any], int], httpx.Response]) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content))
        return self._answer(self.bodies[-1], len(self.bodies))


def alarms_result(records: list[bytes], token: int, limit: int = 100) -> dict[str, Any]:
    return {
        "alarms": [json.loads(r) for r in records],
        "current_page": 1,
        "limit_value": limit,
        "total_pages": 1,
        "update_token": token,
    }


def reply(items: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"reply": items})


def echo_pages(body: dict[str, Any], _: int) -> httpx.Response:
    """One record per call, id = project id, token = project id * 10."""
    return reply(
        [
            {
                "method": call["method"],
                "id": call["id"],
                "result": alarms_result(
                    [record_bytes(call["params"]["project_id"], project_id=call["params"]["project_id"])],
                    call["params"]["project_id"] * 10,
                ),
            }
            for call in body["methods"]
        ]
    )


def client_for(handler: Handler, **settings: Any) -> tuple[BoroClient, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    options = BoroSettings(url=URL, retry=RetrySettings(initial_backoff=0.01, max_backoff=0.05), **settings)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return BoroClient(http, options, sleep=sleep), slept


async def test_one_request_carries_many_projects_split_by_batch_size() -> None:
    recorder = Recorder(echo_pages)
    client, _ = client_for(recorder, batch_size=2, user_id=4)
    results = await client.task_alarms([AlarmQuery(project_id=p) for p in (1, 2, 3, 4, 5)])
    assert [len(body["methods"]) for body in recorder.bodies] == [2, 2, 1]
    assert recorder.bodies[0]["user_id"] == 4
    assert [r.update_token for r in results if isinstance(r, AlarmPage)] == [10, 20, 30, 40, 50]
    assert [r.records[0].record.id for r in results if isinstance(r, AlarmPage)] == [1, 2, 3, 4, 5]


async def test_replies_are_matched_by_id_not_position() -> None:
    def reversed_reply(body: dict[str, Any], n: int) -> httpx.Response:
        return httpx.Response(200, json={"reply": list(reversed(json.loads(echo_pages(body, n).content)["reply"]))})

    client, _ = client_for(Recorder(reversed_reply))
    results = await client.task_alarms([AlarmQuery(project_id=p) for p in (1, 2, 3)])
    assert [r.update_token for r in results if isinstance(r, AlarmPage)] == [10, 20, 30]


def test_query_parameters_cover_the_reference() -> None:
    query = AlarmQuery(
        project_id=23,
        task_ids=[241555, 241556],
        filter=FilterSettings(level="error", trigger_groups=["etr"], trigger_names=["IatError"]),
        limit=50,
        page=3,
        period_from=1590570000,
        period_to=1590580000,
        active_states_only=True,
    )
    assert query.params() == {
        "project_id": 23,
        "task_ids": [241555, 241556],
        "kind": "alarm",
        "limit_value": 50,
        "page": 3,
        "active_states_only": True,
        "filter": {
            "level": "error",
            "trigger_groups": ["etr"],
            "trigger_names": ["IatError"],
            "period_from": 1590570000,
            "period_to": 1590580000,
        },
    }
    assert query.after(99).params()["update_token"] == 99
    assert "page" not in query.after(99).params()


@pytest.mark.parametrize(
    ("response", "error", "fragment"),
    [
        (httpx.Response(503, text="<html><h1>502 Bad Gateway</h1></html>"), BoroHTTPError, "HTTP 503"),
        (httpx.Response(200, content=b'{"reply": [{"method": "TaskAl'), BoroDecodeError, "malformed"),
        (httpx.Response(200, content=b"<html>not json</html>"), BoroDecodeError, "<html>not json"),
        (httpx.Response(200, json={"reply": "nope"}), BoroDecodeError, "Expected `array`"),
    ],
)
async def test_whole_request_failures_are_retried_then_typed(
    response: httpx.Response, error: type[Exception], fragment: str
) -> None:
    recorder = Recorder(lambda _body, _n: response)
    client, slept = client_for(recorder)
    [result] = await client.task_alarms([AlarmQuery(project_id=23, update_token=5)])
    assert isinstance(result, error)
    assert fragment in str(result)
    assert len(recorder.requests) == 4
    assert len(slept) == 3


async def test_retry_after_is_honoured() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")])

    def first_429(body: dict[str, Any], n: int) -> httpx.Response:
        return next(answers, None) or echo_pages(body, n)

    client, slept = client_for(Recorder(first_429))
    [result] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(result, AlarmPage)
    assert slept == [7.0]


async def test_client_errors_are_not_retried() -> None:
    recorder = Recorder(lambda _b, _n: httpx.Response(401, json={"error": "signature mismatch"}))
    client, _ = client_for(recorder)
    [result] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(result, BoroHTTPError)
    assert result.status == 401
    assert "signature mismatch" in result.body_excerpt
    assert len(recorder.requests) == 1


async def test_transport_failure_is_typed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = client_for(refuse)
    [result] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(result, BoroTransportError)
    assert "cannot reach" in str(result)


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"method": "TaskAlarms", "id": 1, "error": "Access denied"}, "Access denied"),
        ({"method": "TaskAlarms", "id": 1, "error": {"code": 17, "text": "bad project"}}, "bad project"),
        ({"method": "TaskAlarms", "id": 1}, "neither result nor error"),
        ({"method": "TaskAlarms", "id": 1, "result": {"alarms": "x", "update_token": 1}}, "not a TaskAlarms result"),
        ({"method": "TaskAlarms", "id": 1, "result": {"alarms": []}}, "update_token"),
    ],
)
async def test_item_failures_are_typed_per_project(item: dict[str, Any], fragment: str) -> None:
    def one_bad(body: dict[str, Any], n: int) -> httpx.Response:
        good = json.loads(echo_pages(body, n).content)["reply"]
        return reply([item, *good[1:]])

    client, _ = client_for(Recorder(one_bad))
    bad, good = await client.task_alarms([AlarmQuery(project_id=23), AlarmQuery(project_id=24)])
    assert isinstance(bad, BoroReplyError)
    assert fragment in str(bad)
    assert isinstance(good, AlarmPage)


async def test_unknown_reply_id_is_an_error() -> None:
    def wrong_id(body: dict[str, Any], _: int) -> httpx.Response:
        return reply([{"method": "TaskAlarms", "id": 99, "result": alarms_result([], 1)}, {"method": "x", "id": 1}])

    client, _ = client_for(Recorder(wrong_id))
    [result] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(result, BoroReplyError)
    assert "[99]" in str(result)


async def test_two_answers_to_one_call_refuse_the_reply() -> None:
    def twice(body: dict[str, Any], n: int) -> httpx.Response:
        items = json.loads(echo_pages(body, n).content)["reply"]
        return reply([items[0], {**items[0], "result": alarms_result([], 7)}, *items[1:]])

    client, _ = client_for(Recorder(twice))
    results = await client.task_alarms([AlarmQuery(project_id=23), AlarmQuery(project_id=24)])
    assert [str(result) for result in results] == [
        "Boro reply item None: reply ids [1] answer one call more than once"
    ] * 2


async def test_bad_records_are_rejected_one_by_one_with_their_bytes() -> None:
    records = [
        record_bytes(1),
        record_bytes(2, id="two"),
        msgspec.json.encode({"project_id": 23}),
        record_bytes(4, type="gauge"),
        record_bytes(5, active=None),
    ]

    def answer(body: dict[str, Any], _: int) -> httpx.Response:
        result = alarms_result([], 9)
        result["alarms"] = [json.loads(r) for r in records]
        return reply([{"method": "TaskAlarms", "id": 1, "result": result}])

    client, _ = client_for(Recorder(answer))
    [page] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(page, AlarmPage)
    assert [r.record.id for r in page.records] == [1]
    reasons = [r.reason for r in page.rejected]
    assert "Expected `int`, got `str` - at `$.id`" in reasons[0]
    assert "missing required field `id`" in reasons[1]
    assert reasons[2:] == ["type 'gauge' is neither 'state' nor 'event'", "a state record without 'active'"]
    assert json.loads(page.rejected[0].raw)["id"] == "two"
    assert page.full is False


async def test_requests_are_signed_verifiably() -> None:
    key = hmac_auth.decode_key("AGnO/VenzHB9xkLYZG1i70kQ9iyFBBvugGXSFyTQaB0=")
    now = dt.datetime(2026, 11, 21, 8, 0, tzinfo=dt.UTC)
    recorder = Recorder(echo_pages)
    client, _ = client_for(recorder)
    client = BoroClient(
        httpx.AsyncClient(transport=httpx.MockTransport(recorder)),
        BoroSettings(url=URL),
        signer=Signer("4", key, clock=lambda: now),
    )
    await client.task_alarms([AlarmQuery(project_id=23)])
    request = recorder.requests[0]
    problem = hmac_auth.verify(
        "POST", "/ctrl_api/v1/json", dict(request.headers), request.content, keys={"4": key}, now=now
    )
    assert problem is None
    assert request.headers["Authorization"].startswith("APIAuth-HMAC-SHA256 4:")


async def test_projects_are_discovered_through_every_page() -> None:
    def projects(body: dict[str, Any], _: int) -> httpx.Response:
        page = body["methods"][0]["params"]["page"]
        found = [{"id": 20 + page, "title": f"p{page}"}]
        result = {"projects": found, "current_page": page, "total_pages": 3, "limit_value": 1}
        return reply([{"method": "ProjectsList", "id": 1, "result": result}])

    client, _ = client_for(Recorder(projects))
    assert await client.project_ids() == [21, 22, 23]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trigger_time": 1590570529000}, "trigger_time 1590570529000 is not a plausible Unix time in seconds"),
        ({"trigger_time": 17}, "trigger_time 17 is not a plausible Unix time in seconds"),
        ({"active": False, "info": {"time": 1.0, "time_end": 1e300}}, "info.time_end 1e+300 is not a plausible"),
        ({"active": False, "info": {"time": -1e300, "time_end": 5.0}}, "info.time -1e+300 is not a plausible"),
    ],
)
async def test_records_whose_times_are_not_times_are_rejected_naming_the_field(
    fields: dict[str, Any], reason: str
) -> None:
    records = [record_bytes(1), record_bytes(2, **fields), record_bytes(3, active=False, info={"time_end": 9e9})]

    def answer(body: dict[str, Any], _: int) -> httpx.Response:
        return reply([{"method": "TaskAlarms", "id": 1, "result": alarms_result(records, 9)}])

    client, _ = client_for(Recorder(answer))
    [page] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(page, AlarmPage)
    assert [r.record.id for r in page.records] == [1, 3]
    [rejected] = page.rejected
    assert reason in rejected.reason
    assert json.loads(rejected.raw) == json.loads(records[1])


async def test_a_malformed_projects_list_is_a_reply_error() -> None:
    def projects(body: dict[str, Any], _: int) -> httpx.Response:
        return reply([{"method": "ProjectsList", "id": 1, "result": {"projects": [{"title": "no id"}]}}])

    client, _ = client_for(Recorder(projects))
    with pytest.raises(BoroReplyError, match=r"result is not a ProjectsList result: .*\$\.projects\[0\]"):
        await client.project_ids()


@pytest.mark.parametrize(
    ("response", "permanent"),
    [
        (httpx.Response(401, json={"error": "signature mismatch"}), True),
        (httpx.Response(403, text="Forbidden"), True),
        (httpx.Response(404, text="Not Found"), True),
        (httpx.Response(400, json={"error": "bad envelope"}), False),
        (reply([{"method": "TaskAlarms", "id": 1, "error": "access denied for user_id 5"}]), True),
        (reply([{"method": "TaskAlarms", "id": 1, "error": {"code": 7, "message": "Permission denied"}}]), True),
        (reply([{"method": "TaskAlarms", "id": 1, "error": "project 99 not found"}]), False),
    ],
)
async def test_refusals_of_the_bridge_itself_are_permanent_and_name_the_settings(
    response: httpx.Response, permanent: bool
) -> None:
    client, _ = client_for(Recorder(lambda _b, _n: response))
    [result] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(result, BoroHTTPError | BoroReplyError)
    assert result.permanent is permanent
    assert (result.fix is not None and "boro." in result.fix) is permanent
