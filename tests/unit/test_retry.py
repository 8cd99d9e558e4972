"""One retry policy: the error's ``retriable``, ``permanent`` and ``retry_after`` decide, in the client and the
cycle alike, whatever class the error is."""

from __future__ import annotations

import json
from typing import Any

import httpx

from borobridge.backoff import Backoff
from borobridge.boro.client import MAX_ATTEMPTS, BoroClient
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.checkpoint import Checkpoint
from borobridge.errors import BoroError, BridgeError, SinkError
from borobridge.pipeline import Pipeline
from borobridge.retry import repeat_delay, retry_delay
from borobridge.settings import load_settings
from borobridge.sinks import Batch
from tests.support.records import record_bytes

URL = "http://boro.test/ctrl_api/v1/json"
INITIAL, LONGEST = 0.01, 0.05
SETTINGS = load_settings(
    None,
    {
        "BOROBRIDGE_BORO__URL": URL,
        "BOROBRIDGE_BORO__PROJECTS": "[23]",
        "BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF": str(INITIAL),
        "BOROBRIDGE_BORO__RETRY__MAX_BACKOFF": str(LONGEST),
        "BOROBRIDGE_FIRST_START__MODE": "all",
    },
)


class ThrottledError(BoroError):
    """A kind of Boro failure the client has never heard of: retriable, with the server's own wait (its ``kind``
    is its parent's, so the error kinds the metrics enumerate stay those of the bridge)."""

    def __init__(self) -> None:
        self.retry_after = 4.0
        super().__init__("Boro throttles this user")


class SuspendedError(SinkError):
    """A sink failure that only a changed setting cures."""

    @property
    def permanent(self) -> bool:
        return True


def backoff() -> Backoff:
    return Backoff(INITIAL, LONGEST)


def test_the_errors_attributes_alone_decide() -> None:
    assert retry_delay(BridgeError("stop"), backoff()) is None
    assert retry_delay(ValueError("a bug"), backoff()) is None
    assert retry_delay(ThrottledError(), backoff()) == 4.0
    assert INITIAL / 2 <= (retry_delay(SinkError("no ack"), backoff()) or 0.0) <= INITIAL
    assert retry_delay(SuspendedError("quota"), backoff()) == LONGEST
    assert repeat_delay(SuspendedError("quota"), backoff()) is None, "a permanent error goes back to the cycle"
    assert repeat_delay(ThrottledError(), backoff()) == 4.0


def alarms_reply(body: dict[str, Any]) -> httpx.Response:
    """One active record per TaskAlarms call, on a page that is not full."""
    result = {"alarms": [json.loads(record_bytes(7))], "update_token": 10, "limit_value": 100, "total_pages": 1}
    items = [{"method": call["method"], "id": call["id"], "result": result} for call in body["methods"]]
    return httpx.Response(200, json={"reply": items})


def client_for(failures: int, slept: list[float]) -> tuple[BoroClient, list[int]]:
    """A client whose first ``failures`` requests fail with :class:`ThrottledError`; counts the requests."""
    requests = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        requests[0] += 1
        if requests[0] <= failures:
            raise ThrottledError
        return alarms_reply(json.loads(request.content))

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return BoroClient(http, SETTINGS.boro, sleep=sleep), requests


async def test_the_client_repeats_a_new_retriable_error_after_its_retry_after() -> None:
    slept: list[float] = []
    client, requests = client_for(failures=1, slept=slept)
    [page] = await client.task_alarms([AlarmQuery(project_id=23)])
    assert isinstance(page, AlarmPage)
    assert (requests[0], slept) == (2, [4.0])


class Sink:
    """A sink that fails every delivery with ``error``."""

    def __init__(self, error: BridgeError) -> None:
        self.error = error
        self.batches = 0

    async def restore(self) -> dict[str, Checkpoint]:
        return {}

    async def deliver(self, batch: Batch) -> None:
        self.batches += 1
        raise self.error


async def test_the_cycle_waits_a_new_retriable_errors_retry_after() -> None:
    slept: list[float] = []
    client, requests = client_for(failures=MAX_ATTEMPTS, slept=slept)
    pipeline = Pipeline(client, Sink(SinkError("unused")), SETTINGS, server_name="boro-test")
    await pipeline.restore()
    assert await pipeline.poll_once() == 4.0
    assert (requests[0], slept) == (MAX_ATTEMPTS, [4.0] * (MAX_ATTEMPTS - 1))


async def test_the_cycle_waits_the_longest_backoff_for_any_permanent_error() -> None:
    committer = Sink(SuspendedError("the sink's quota is used up"))
    client, _ = client_for(failures=0, slept=[])
    pipeline = Pipeline(client, committer, SETTINGS, server_name="boro-test")
    await pipeline.restore()
    assert await pipeline.poll_once() == LONGEST
    assert committer.batches == 1
