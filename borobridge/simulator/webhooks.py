"""Webhooks from the simulator: one POST per record change, as a Boro project's notification profile sends them.

boro-api.md ("Push alternative") names the fields and leaves their types open; the simulator chooses:
``status`` (``Active``, ``Cleared``, ``Event``), ``level``, ``time`` and ``time_end`` (Unix seconds, float;
``time_end`` null until cleared), ``duration`` (seconds, null until cleared), ``project``, ``probe`` and ``task``
(names, with their ids beside them), ``trigger`` (the display name, e.g. ``Audio track missing``, never the key
name) and ``referenceNumber`` (the record id, shared by the Active and Cleared webhooks of one state).

Faults, drawn per webhook from a generator of their own (the world stays the same whatever they are): ``lost``
(never sent), ``delayed`` (sent ``delay_seconds`` late), ``duplicated`` (sent twice) and ``bad_signature``
(signed with a wrong key). A webhook nobody accepts is not sent again, as with a real server's fire-and-forget
notifications: the bridge's regular polls are what make that safe.

They are posted ``WEBHOOKS_IN_FLIGHT`` at once, in no particular order: a webhook is only a doorbell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from borobridge.boro import hmac_auth
from borobridge.settings import SimulatorWebhookSettings
from borobridge.simulator.server import Simulator
from borobridge.simulator.store import Change

log = logging.getLogger(__name__)

_WORD = re.compile(r"[A-Z]+[a-z0-9]*|[0-9]+")
_WRONG_KEY = b"not the key the bridge expects"
WEBHOOKS_IN_FLIGHT = 16
"""Webhooks posted at once at most: enough for thousands a second against a local receiver."""
QUEUE_LIMIT = 10_000
"""Webhooks waiting to be posted at most; beyond that a change's webhook is lost (and logged)."""


def display_name(key_name: str) -> str:
    """A trigger's display name from its key name: ``AudioTrackMissing`` → ``Audio track missing``."""
    words = _WORD.findall(key_name) or [key_name]
    text = " ".join(word if word.isupper() else word.lower() for word in words)
    return text[:1].upper() + text[1:]


def webhook_body(sim: Simulator, change: Change) -> dict[str, Any]:
    """The webhook Boro would send for ``change``, from the record as it stands."""
    alarm = sim.record(change.record_id).alarm
    task = next(task for task in sim.tasks(change.project_id) if task.task_id == change.task_id)
    probe = next(probe for probe in sim.probes(change.project_id) if probe.app_id == task.app_id)
    project = next(project for project in sim.projects() if project.id == change.project_id)
    info = alarm["info"]
    start = task.start_f + float(info.get("time", 0.0))
    end = task.start_f + float(info["time_end"]) if "time_end" in info else None
    return {
        "status": _status(change),
        "level": alarm["level"],
        "time": round(start, 3),
        "time_end": None if end is None else round(end, 3),
        "duration": None if end is None else round(end - start, 3),
        "project": project.title,
        "project_id": project.id,
        "probe": probe.name,
        "app_id": probe.app_id,
        "task": task.name,
        "task_id": task.task_id,
        "trigger": display_name(alarm["name"]),
        "referenceNumber": alarm["id"],
    }


def _status(change: Change) -> str:
    if change.type == "event":
        return "Event"
    return "Cleared" if change.transition == "cleared" else "Active"


class WebhookSender:
    """Queues a webhook for every change of ``sim`` and POSTs them while :meth:`run` runs, ``in_flight`` at once.

    The order of the webhooks is not kept: each is only a doorbell for its project. ``sent``, ``lost`` and
    ``failed`` count what happened to them (a failed POST is not repeated; a webhook that finds the queue full is
    lost). ``options`` may be replaced while running (the faults and the URL of the next webhooks change).
    """

    def __init__(
        self,
        sim: Simulator,
        options: SimulatorWebhookSettings,
        http: httpx.AsyncClient,
        *,
        access_id: str,
        in_flight: int = WEBHOOKS_IN_FLIGHT,
    ) -> None:
        if not options.url:
            raise ValueError("simulator.webhooks.url is not set: there is nowhere to send webhooks")
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self.options = options
        self._sim = sim
        self._http = http
        self._access_id = options.hmac.access_id if options.hmac and options.hmac.access_id else access_id
        self._key = hmac_auth.decode_key(options.hmac.key.reveal()) if options.hmac is not None else None
        self._rng = random.Random(f"boro-webhooks-{sim.seed}")
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._in_flight = in_flight
        self._slots = asyncio.Semaphore(in_flight)
        self.sent = self.lost = self.failed = 0
        sim.watch(self._changed)

    @property
    def queued(self) -> int:
        """Webhooks waiting for a free slot."""
        return self._queue.qsize()

    def _changed(self, change: Change) -> None:
        """Shape the webhook at once, while the record is as the change left it."""
        try:
            self._queue.put_nowait((change.project_id, msgspec.json.encode(webhook_body(self._sim, change))))
        except asyncio.QueueFull:
            self.lost += 1
            if self.lost == 1 or self.lost % QUEUE_LIMIT == 0:
                log.warning("%d webhooks queued: the newest are lost until the receiver keeps up", QUEUE_LIMIT)

    async def run(self) -> None:
        """Send the queued webhooks until cancelled: ``in_flight`` workers, delayed ones in tasks of their own."""
        async with asyncio.TaskGroup() as tasks:
            for number in range(self._in_flight):
                tasks.create_task(self._work(tasks), name=f"boro-webhooks-{number}")

    async def _work(self, later: asyncio.TaskGroup) -> None:
        """Take the next webhook and draw its faults at once (in queue order, so a seed replays them), then send."""
        while True:
            project_id, body = await self._queue.get()
            options = self.options
            if self._rng.random() < options.lost:
                self.lost += 1
                continue
            copies = 2 if self._rng.random() < options.duplicated else 1
            delayed = self._rng.random() < options.delayed
            keys = [self._signing_key() for _ in range(copies)]
            if delayed:
                later.create_task(self._send_later(project_id, body, keys), name="boro-webhook-delayed")
            else:
                await self._send(project_id, body, keys)

    def _signing_key(self) -> bytes | None:
        if self._key is None:
            return None
        return _WRONG_KEY if self._rng.random() < self.options.bad_signature else self._key

    async def _send_later(self, project_id: int, body: bytes, keys: list[bytes | None]) -> None:
        await asyncio.sleep(self.options.delay_seconds)
        await self._send(project_id, body, keys)

    async def _send(self, project_id: int, body: bytes, keys: list[bytes | None]) -> None:
        url = str(self.options.url).replace("{project_id}", str(project_id))
        for key in keys:
            async with self._slots:
                await self._post(url, body, key)

    async def _post(self, url: str, body: bytes, key: bytes | None) -> None:
        try:
            response = await self._http.post(url, content=body, headers=self._headers(url, body, key))
        except httpx.HTTPError as error:
            self.failed += 1
            log.warning("webhook to %s not delivered: %s", url, error)
            return
        self.sent += 1
        if not response.is_success:
            log.info("webhook to %s answered HTTP %d", url, response.status_code)

    def _headers(self, url: str, body: bytes, key: bytes | None) -> dict[str, str]:
        if key is None:
            return {"Content-Type": hmac_auth.CONTENT_TYPE}
        parts = urlsplit(url)
        uri = f"{parts.path}?{parts.query}" if parts.query else parts.path
        return hmac_auth.signed_headers("POST", uri, body, self._access_id, key, datetime.now(UTC))


@contextlib.asynccontextmanager
async def sending_webhooks(
    sim: Simulator, options: SimulatorWebhookSettings, *, access_id: str
) -> AsyncIterator[WebhookSender | None]:
    """Send ``sim``'s webhooks while the block runs, when ``options.url`` is set (else yields ``None``)."""
    if not options.url:
        yield None
        return
    async with httpx.AsyncClient(timeout=5.0) as http, asyncio.TaskGroup() as tasks:
        sender = WebhookSender(sim, options, http, access_id=access_id)
        sending = tasks.create_task(sender.run(), name="boro-webhooks")
        log.info("sending a webhook for every record change to %s", options.url)
        try:
            yield sender
        finally:
            sending.cancel()
