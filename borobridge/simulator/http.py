"""The Boro simulator behind real HTTP (an ASGI app served in-process) or an httpx mock transport.

``serve_simulator`` is for tests and the embedded default: it binds a loopback port (0 = any free port), yields
the endpoint URL (HTTPS with a certificate and key) and stops the server on exit (served by
:func:`borobridge.asgi_server.serve_asgi`: no signal handlers, no logging set-up). ``run_simulator`` is what
``borobridge simulate`` runs until cancelled.
``personality_from`` and ``faults_from`` turn the ``simulator`` settings into the simulator's own types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import httpx
import msgspec

from borobridge.asgi_server import Receive, Scope, Send, request_headers, request_uri, serve_asgi
from borobridge.settings import SimulatorSettings, SimulatorWebhookSettings
from borobridge.simulator.faults import Faults
from borobridge.simulator.personality import Personality, TokenKind
from borobridge.simulator.server import ENDPOINT_PATH, Simulator
from borobridge.simulator.webhooks import sending_webhooks

log = logging.getLogger(__name__)


class SimulatorApp:
    """ASGI application answering every HTTP request with ``Simulator.handle``, waiting out slow replies."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        reply = self.sim.handle(scope["method"], request_uri(scope), request_headers(scope), body)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def as_mock_transport_handler(sim: Simulator) -> Callable[[httpx.Request], httpx.Response]:
    """A handler for ``httpx.MockTransport``: the simulator answers at once (slow-reply delays are skipped)."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        reply = sim.handle(request.method, request.url.raw_path.decode("ascii"), request.headers, body)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    return handler


async def _advance_forever(sim: Simulator, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        sim.advance()


@contextlib.asynccontextmanager
async def serve_simulator(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    advance_every: float | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    webhooks: SimulatorWebhookSettings | None = None,
) -> AsyncIterator[str]:
    """Serve ``sim`` over HTTP while the block runs; yields the endpoint URL with the port actually bound.

    With ``advance_every`` (seconds), ``sim.advance()`` runs that often in the background while serving. With
    ``certfile`` and ``keyfile`` (PEM) it serves HTTPS. With ``webhooks.url`` set, every record change is also sent
    as a webhook (``borobridge.simulator.webhooks``).
    """
    serving = serve_asgi(SimulatorApp(sim), host, port, name="boro-simulator-http", certfile=certfile, keyfile=keyfile)
    async with (
        sending_webhooks(sim, webhooks or SimulatorWebhookSettings(), access_id=str(sim.user_id)),
        serving as base_url,
    ):
        if advance_every is None:
            yield base_url + ENDPOINT_PATH
            return
        async with asyncio.TaskGroup() as tasks:
            advancing = tasks.create_task(_advance_forever(sim, advance_every), name="boro-simulator-advance")
            try:
                yield base_url + ENDPOINT_PATH
            finally:
                advancing.cancel()


def personality_from(options: SimulatorSettings) -> Personality:
    """The personality the ``simulator`` settings select (``token_mode`` is ``Personality.token``)."""
    return Personality(
        token=options.token_mode,
        token_compare=options.token_compare,
        token_order=options.token_order,
        period_order=options.period_order,
        clock_offset=options.clock_offset,
        probe_stops=options.probe_stops,
        stop_seconds=options.stop_seconds,
        moving_records=options.moving_records,
    )


def faults_from(options: SimulatorSettings) -> Faults:
    """The faults the ``simulator.faults`` settings switch on."""
    return Faults(**msgspec.structs.asdict(options.faults))


def describe(personality: Personality) -> str:
    """The personality's fields that differ from the default, for a log line (``default`` when none do)."""
    default = Personality()
    changed = [
        f"{name}={value}"
        for name, value in msgspec.structs.asdict(personality).items()
        if value != getattr(default, name)
    ]
    return ", ".join(changed) or "default"


async def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    seed: int = 0,
    projects: int = 2,
    probes_per_project: int = 2,
    tasks_per_probe: int = 3,
    token_mode: TokenKind | None = None,
    personality: Personality | None = None,
    rate_per_second: float = 5.0,
    advance_every: float = 1.0,
    retain_seconds: float | None = 3600.0,
    faults: Faults = Faults(),  # noqa: B008 - frozen, immutable default
    hmac_keys: Mapping[str, bytes] | None = None,
    user_id: int = 4,
    on_ready: Callable[[str], None] | None = None,
    webhooks: SimulatorWebhookSettings | None = None,
) -> None:
    """Build a simulator and serve it until cancelled (Ctrl+C under ``asyncio.run`` cancels it cleanly).

    ``retain_seconds`` bounds memory: records and changes older than that are forgotten (active states stay).
    ``token_mode`` is a shortcut for ``personality=Personality(token=...)``.

    ``user_id`` is the one Boro user the simulator serves (others get an error item for every call).
    ``on_ready`` receives the endpoint URL once the port is bound; the URL is also logged at INFO.
    """
    sim = Simulator(
        seed=seed,
        projects=projects,
        probes_per_project=probes_per_project,
        tasks_per_probe=tasks_per_probe,
        token_mode=token_mode,
        personality=personality,
        rate_per_second=rate_per_second,
        faults=faults,
        hmac_keys=hmac_keys,
        retain_seconds=retain_seconds,
        user_id=user_id,
    )
    async with serve_simulator(sim, host, port, advance_every=advance_every, webhooks=webhooks) as url:
        log.info(
            "Boro simulator serving %s (seed %d, user_id %d, personality: %s)",
            url,
            seed,
            user_id,
            describe(sim.personality),
        )
        if on_ready is not None:
            on_ready(url)
        await asyncio.Event().wait()
