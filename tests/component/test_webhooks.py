"""The webhook endpoint over real HTTP: signatures, body limits, unknown projects, and what each one counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from borobridge.boro import hmac_auth
from borobridge.doorbell import Doorbell, Doorbells
from borobridge.errors import ConfigError
from borobridge.metrics import Metrics
from borobridge.secret import Secret
from borobridge.settings import WebhookHmacSettings, WebhookSettings
from borobridge.webhooks import WebhookApp, serve_webhooks

VECTOR_SECRET = "AGnO/VenzHB9xkLYZG1i70kQ9iyFBBvugGXSFyTQaB0="  # the public APIAuth test vector of boro-api.md
VECTOR_DATE = datetime(2022, 8, 25, 4, 27, 52, tzinfo=UTC)
KEY = hmac_auth.decode_key(VECTOR_SECRET)
PATH = "/webhooks/boro/23"
BODY = b'{"status":"Active","level":"warning","trigger":"Audio track missing","referenceNumber":13522793}'


class Listener:
    """A served webhook app, its doorbell and metrics, and a client for it."""

    def __init__(self, client: httpx.AsyncClient, doorbell: Doorbell, metrics: Metrics) -> None:
        self.client = client
        self.doorbell = doorbell
        self.metrics = metrics

    def counted(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    @property
    def rung(self) -> bool:
        return self.doorbell.waiting


def signed(body: bytes, *, key: bytes = KEY, at: datetime = VECTOR_DATE, path: str = PATH) -> dict[str, str]:
    return hmac_auth.signed_headers("POST", path, body, "4", key, at)


async def listening(options: WebhookSettings, now: datetime = VECTOR_DATE) -> AsyncIterator[Listener]:
    metrics = Metrics()
    doorbells = Doorbells(lambda: Doorbell(metrics=metrics))
    doorbell = doorbells.open(0, {23, 24}.__contains__)
    app = WebhookApp(options, doorbells, lambda: {23, 24}, metrics, clock=lambda: now)
    async with serve_webhooks(app, "127.0.0.1", 0) as url, httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        yield Listener(client, doorbell, metrics)


def hmac_options(**overrides: Any) -> WebhookSettings:
    return WebhookSettings(enabled=True, hmac=WebhookHmacSettings(key=Secret(VECTOR_SECRET), **overrides))


@pytest.fixture
async def signed_listener() -> AsyncIterator[Listener]:
    async for listener in listening(hmac_options()):
        yield listener


@pytest.fixture
async def open_listener() -> AsyncIterator[Listener]:
    async for listener in listening(WebhookSettings(enabled=True, max_body_bytes=1024)):
        yield listener


async def test_a_webhook_signed_in_the_public_vectors_scheme_rings_the_doorbell(signed_listener: Listener) -> None:
    headers = signed(BODY)
    assert headers["Date"] == "Thu, 25 Aug 2022 04:27:52 GMT"
    response = await signed_listener.client.post(PATH, content=BODY, headers=headers)
    assert response.status_code == 204
    assert signed_listener.rung
    assert signed_listener.counted("borobridge_webhooks_received_total") == 1


def _unsigned(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _wrong_key(body: bytes) -> dict[str, str]:
    return signed(body, key=b"another key entirely")


def _tampered(body: bytes) -> dict[str, str]:
    return signed(body + b" ")


def _stale(body: bytes) -> dict[str, str]:
    return signed(body, at=VECTOR_DATE - timedelta(seconds=61))


def _other_path(body: bytes) -> dict[str, str]:
    return signed(body, path="/webhooks/boro/24")


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (_unsigned, "unsigned"),
        (_wrong_key, "signature"),
        (_tampered, "content_hash"),
        (_stale, "date"),
        (_other_path, "signature"),
    ],
)
async def test_a_bad_signature_gets_401_and_is_counted_by_reason(
    signed_listener: Listener, make_headers: Any, reason: str
) -> None:
    response = await signed_listener.client.post(PATH, content=BODY, headers=make_headers(BODY))
    assert response.status_code == 401
    assert "webhook.hmac" in response.text
    assert not signed_listener.rung
    assert signed_listener.counted("borobridge_webhooks_rejected_total", reason=reason) == 1
    assert signed_listener.counted("borobridge_webhooks_received_total") == 0


async def test_a_date_within_the_allowed_skew_is_accepted() -> None:
    async for listener in listening(hmac_options(max_skew=120.0)):
        headers = signed(BODY, at=VECTOR_DATE - timedelta(seconds=100))
        assert (await listener.client.post(PATH, content=BODY, headers=headers)).status_code == 204


async def test_a_configured_access_id_is_the_only_one_accepted() -> None:
    async for listener in listening(hmac_options(access_id="boro-webhooks")):
        other = await listener.client.post(PATH, content=BODY, headers=signed(BODY))
        assert other.status_code == 401
        own = hmac_auth.signed_headers("POST", PATH, BODY, "boro-webhooks", KEY, VECTOR_DATE)
        assert (await listener.client.post(PATH, content=BODY, headers=own)).status_code == 204


async def test_an_unknown_project_gets_404_after_the_signature_check(signed_listener: Listener) -> None:
    path = "/webhooks/boro/99"
    unsigned = await signed_listener.client.post(path, content=BODY)
    assert unsigned.status_code == 401  # an unsigned caller learns nothing about which projects are polled
    response = await signed_listener.client.post(path, content=BODY, headers=signed(BODY, path=path))
    assert response.status_code == 404
    assert "does not poll project 99" in response.text
    assert not signed_listener.rung
    assert signed_listener.counted("borobridge_webhooks_rejected_total", reason="unknown_project") == 1


async def test_a_body_over_the_limit_gets_413_declared_or_streamed(open_listener: Listener) -> None:
    big = b"x" * 1025
    declared = await open_listener.client.post(PATH, content=big)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is counted as it arrives
        for _ in range(3):
            yield b"y" * 400

    streamed = await open_listener.client.post(PATH, content=chunks())
    assert streamed.status_code == 413
    assert not open_listener.rung
    assert open_listener.counted("borobridge_webhooks_rejected_total", reason="too_large") == 2
    at_limit = await open_listener.client.post(PATH, content=b"z" * 1024)
    assert at_limit.status_code == 204


async def test_other_paths_and_methods_are_refused(open_listener: Listener) -> None:
    assert (await open_listener.client.get(PATH)).status_code == 405
    assert (await open_listener.client.post("/webhooks/boro/abc", content=BODY)).status_code == 404
    assert (await open_listener.client.post("/metrics", content=BODY)).status_code == 404
    assert not open_listener.rung


async def test_without_hmac_any_webhook_for_a_polled_project_is_accepted(open_listener: Listener) -> None:
    response = await open_listener.client.post("/webhooks/boro/24", content=b"not even JSON")
    assert response.status_code == 204
    assert open_listener.rung


async def test_a_port_in_use_is_a_configuration_error() -> None:
    metrics = Metrics()
    app = WebhookApp(WebhookSettings(), Doorbells(Doorbell), set, metrics)
    async with serve_webhooks(app, "127.0.0.1", 0) as url:
        port = int(url.rpartition(":")[2])
        with pytest.raises(ConfigError, match=r"webhook\.port: cannot listen on"):
            async with serve_webhooks(app, "127.0.0.1", port):
                pass
