"""The simulator's webhooks: shaped like Boro's, signed so the bridge accepts them, with their faults; and the
bridge process, ringed by them, delivering a record long before its poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from borobridge.asgi_server import Receive, Scope, Send, serve_asgi
from borobridge.doorbell import Doorbell, Doorbells
from borobridge.metrics import Metrics
from borobridge.secret import Secret
from borobridge.settings import HmacSettings, SimulatorWebhookSettings, WebhookHmacSettings, WebhookSettings
from borobridge.simulator import Change, Simulator, sending_webhooks, serve_simulator
from borobridge.simulator.webhooks import WEBHOOKS_IN_FLIGHT, display_name, webhook_body
from borobridge.webhooks import WebhookApp
from tests.support.expectations import expected_ids, read_events

KEY = "AGnO/VenzHB9xkLYZG1i70kQ9iyFBBvugGXSFyTQaB0="
HTTP_TASK = 241555  # project 23, an HTTP input
UDP_TASK = 241556


def quiet_simulator() -> Simulator:
    return Simulator(seed=3, rate_per_second=0.0)


def test_a_state_rings_active_then_cleared_with_one_reference_number_and_the_display_name() -> None:
    sim = quiet_simulator()
    changes: list[Change] = []
    sim.watch(changes.append)
    record = sim.trigger(HTTP_TASK, "AudioTrackMissing", level="major")
    raised = webhook_body(sim, changes[-1])
    sim.clear(record.id)
    cleared = webhook_body(sim, changes[-1])
    event = sim.trigger(UDP_TASK, "TosDscp")
    fired = webhook_body(sim, changes[-1])
    assert len(changes) == 3
    assert (raised["status"], cleared["status"], fired["status"]) == ("Active", "Cleared", "Event")
    assert raised["referenceNumber"] == cleared["referenceNumber"] == record.id != fired["referenceNumber"]
    assert fired["referenceNumber"] == event.id
    assert raised["trigger"] == "Audio track missing"
    assert raised["level"] == "major"
    assert (raised["project"], raised["project_id"], raised["task_id"]) == ("Project 23", 23, HTTP_TASK)
    assert raised["probe"].startswith("probe-")
    assert raised["time_end"] is None
    assert raised["duration"] is None
    assert cleared["time_end"] >= cleared["time"]
    assert cleared["duration"] == pytest.approx(cleared["time_end"] - cleared["time"], abs=0.01)


def test_display_names_read_like_words() -> None:
    assert display_name("IatError") == "Iat error"
    assert display_name("BadSource") == "Bad source"
    assert display_name("Scte35Missing") == "Scte35 missing"


class Answers:
    """The bridge's webhook app, recording the status of every answer for a test to await."""

    def __init__(self, app: WebhookApp) -> None:
        self._app = app
        self.statuses: Counter[int] = Counter()
        self._changed = asyncio.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recorded(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                async with self._changed:
                    self.statuses[message["status"]] += 1
                    self._changed.notify_all()
            await send(message)

        await self._app(scope, receive, recorded)  # type: ignore[arg-type]

    async def until(self, total: int, seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: self.statuses.total() >= total)


@contextlib.asynccontextmanager
async def received(sim: Simulator, changes: int, **faults: Any) -> AsyncIterator[tuple[Answers, Any]]:
    """The bridge's endpoint (signed webhooks required), and the simulator's sender pointed at it."""
    hmac = WebhookHmacSettings(key=Secret(KEY))
    answers = Answers(
        WebhookApp(WebhookSettings(enabled=True, hmac=hmac), Doorbells(Doorbell), lambda: {23, 24}, Metrics())
    )
    async with serve_asgi(answers, "127.0.0.1", 0, name="webhook-receiver") as url:
        options = SimulatorWebhookSettings(
            url=url + "/webhooks/boro/{project_id}", hmac=HmacSettings(key=Secret(KEY)), **faults
        )
        async with sending_webhooks(sim, options, access_id="4") as sender:
            for _ in range(changes):
                sim.trigger(UDP_TASK, "Ttl")
            yield answers, sender


async def test_every_change_arrives_signed_and_accepted() -> None:
    async with received(quiet_simulator(), 5) as (answers, _):
        await answers.until(5)
        assert answers.statuses == {204: 5}


async def test_faults_duplicate_missign_lose_and_delay_webhooks() -> None:
    async with received(quiet_simulator(), 3, duplicated=1.0) as (answers, _):
        await answers.until(6)
        assert answers.statuses == {204: 6}
    async with received(quiet_simulator(), 3, bad_signature=1.0) as (answers, _):
        await answers.until(3)
        assert answers.statuses == {401: 3}
    async with received(quiet_simulator(), 3, lost=1.0) as (answers, sender):
        with pytest.raises(TimeoutError):
            await answers.until(1, seconds=0.5)
        assert sender.lost == 3
    async with received(quiet_simulator(), 2, delayed=1.0, delay_seconds=0.3) as (answers, _):
        assert answers.statuses.total() == 0
        await answers.until(2)
        assert answers.statuses == {204: 2}


class Holding:
    """A receiver that holds every request until ``wanted`` are in flight at once (or ``seconds`` pass), then answers
    them all; it notes the most it ever held and how many it answered."""

    def __init__(self, wanted: int, seconds: float = 5.0) -> None:
        self.wanted, self.seconds = wanted, seconds
        self.in_flight = self.peak = self.answered = 0
        self.reached = asyncio.Event()
        self._answered = asyncio.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.wanted:
            self.reached.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reached.wait(), self.seconds)
        self.in_flight -= 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        async with self._answered:
            self.answered += 1
            self._answered.notify_all()

    async def until_answered(self, total: int, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds), self._answered:
            await self._answered.wait_for(lambda: self.answered >= total)


async def test_webhooks_are_posted_several_at_once_and_no_more_than_the_bound() -> None:
    sim = quiet_simulator()
    receiver = Holding(wanted=8)
    async with (
        serve_asgi(receiver, "127.0.0.1", 0, name="holding-receiver") as url,
        sending_webhooks(sim, SimulatorWebhookSettings(url=url + "/hook"), access_id="4") as sender,
    ):
        for _ in range(64):
            sim.trigger(UDP_TASK, "Ttl")
        async with asyncio.timeout(5.0):
            await receiver.reached.wait()  # one webhook at a time never gets there
        await receiver.until_answered(64)
        assert sender is not None
        assert (receiver.answered, sender.queued) == (64, 0)
    assert 8 <= receiver.peak <= WEBHOOKS_IN_FLIGHT


# ---- the bridge process, rung by the simulator ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bridge_config(tmp_path: Path, boro_url: str, health_port: int, webhook_port: int) -> Path:
    config = {
        "boro": {"url": boro_url, "user_id": 4, "projects": [23, 24], "poll_interval": 30},
        "first_start": {"mode": "all"},
        "output": {"path": str(tmp_path / "events.jsonl")},
        "state": {"path": str(tmp_path / "state.json")},
        "health": {"host": "127.0.0.1", "port": health_port},
        "webhook": {"enabled": True, "port": webhook_port, "hmac": {"key": KEY}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


async def until_ready(health: httpx.AsyncClient, seconds: float = 30.0) -> None:
    """Wait for /readyz (the first poll went through), bounded in time: a process offers nothing to await."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                if (await health.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


def output_ids(path: Path) -> set[str]:
    return {event["id"] for event in read_events(path)} if path.exists() else set()


async def until_output(path: Path, wanted: set[str], seconds: float) -> None:
    """Wait until the output file holds ``wanted``, bounded in time (another process writes it: no event)."""
    async with asyncio.timeout(seconds):
        while True:
            if wanted <= await asyncio.to_thread(output_ids, path):
                return
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_a_webhook_makes_the_bridge_deliver_well_before_its_poll_interval(tmp_path: Path) -> None:
    sim = quiet_simulator()
    health_port, webhook_port = free_port(), free_port()
    options = SimulatorWebhookSettings(
        url=f"http://127.0.0.1:{webhook_port}/webhooks/boro/{{project_id}}", hmac=HmacSettings(key=Secret(KEY))
    )
    async with serve_simulator(sim, webhooks=options) as boro_url:
        config = bridge_config(tmp_path, boro_url, health_port, webhook_port)
        command = [sys.executable, "-m", "borobridge", "run", "--config", str(config)]
        environ = os.environ | {"BOROBRIDGE_LOGGING__LEVEL": "WARNING"}
        process = await asyncio.create_subprocess_exec(*command, env=environ)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}", timeout=2.0) as health:
                await until_ready(health)
                sim.trigger(HTTP_TASK, "BadSource")
                await until_output(tmp_path / "events.jsonl", expected_ids(sim), seconds=2.0)
                metrics = (await health.get("/metrics")).text
            assert "borobridge_webhooks_received_total 1.0" in metrics
            assert "Bad source" not in (tmp_path / "events.jsonl").read_text(encoding="utf-8")  # never published
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await process.wait() == 0
