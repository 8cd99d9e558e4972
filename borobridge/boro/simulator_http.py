"""The Boro simulator behind real HTTP (an ASGI app served by uvicorn in-process) or an httpx mock transport.

``serve_simulator`` is for tests and the embedded default: it binds a loopback port (0 = any free port), yields
the endpoint URL and stops the server on exit. uvicorn installs no signal handlers here and configures no logging;
its own loggers are set to WARNING. ``run_simulator`` is what ``borobridge simulate`` runs until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, MutableMapping
from typing import Any

import httpx
import uvicorn

from borobridge.boro.simulator import ENDPOINT_PATH, Faults, Simulator, TokenMode

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STARTUP_TIMEOUT = 10.0


class SimulatorApp:
    """ASGI application answering every HTTP request with ``Simulator.handle``, waiting out slow replies."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        reply = self.sim.handle(scope["method"], _request_uri(scope), _headers(scope), body)
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


def _request_uri(scope: Scope) -> str:
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def as_mock_transport_handler(sim: Simulator) -> Callable[[httpx.Request], httpx.Response]:
    """A handler for ``httpx.MockTransport``: the simulator answers at once (slow-reply delays are skipped)."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        reply = sim.handle(request.method, request.url.raw_path.decode("ascii"), request.headers, body)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    return handler


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _endpoint_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{ENDPOINT_PATH}"


async def _wait_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while not server.started:
            if serving.done():
                raise RuntimeError("the simulator's HTTP server stopped while starting") from serving.exception()
            await asyncio.sleep(0.01)


async def _advance_forever(sim: Simulator, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        sim.advance()


def _server_config(sim: Simulator) -> uvicorn.Config:
    return uvicorn.Config(
        SimulatorApp(sim),
        lifespan="off",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


@contextlib.asynccontextmanager
async def serve_simulator(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, advance_every: float | None = None
) -> AsyncIterator[str]:
    """Serve ``sim`` over HTTP while the block runs; yields the endpoint URL with the port actually bound.

    With ``advance_every`` (seconds), ``sim.advance()`` runs that often in the background while serving.
    """
    server = _InProcessServer(_server_config(sim))
    with contextlib.closing(_bind(host, port)) as sock:
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(server.serve(sockets=[sock]), name="boro-simulator-http")
            advancing = None
            try:
                await _wait_started(server, serving)
                if advance_every is not None:
                    advancing = tasks.create_task(_advance_forever(sim, advance_every), name="boro-simulator-advance")
                yield _endpoint_url(sock)
            finally:
                if advancing is not None:
                    advancing.cancel()
                server.should_exit = True


async def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    seed: int = 0,
    projects: int = 2,
    probes_per_project: int = 2,
    tasks_per_probe: int = 3,
    token_mode: TokenMode = "sequence",  # noqa: S107 - a cursor style, not a credential
    rate_per_second: float = 5.0,
    advance_every: float = 1.0,
    retain_seconds: float | None = 3600.0,
    faults: Faults = Faults(),  # noqa: B008 - frozen, immutable default
    hmac_keys: Mapping[str, bytes] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Build a simulator and serve it until cancelled (Ctrl+C under ``asyncio.run`` cancels it cleanly).

    ``retain_seconds`` bounds memory: records and changes older than that are forgotten (active states stay).

    ``on_ready`` receives the endpoint URL once the port is bound; the URL is also logged at INFO.
    """
    sim = Simulator(
        seed=seed,
        projects=projects,
        probes_per_project=probes_per_project,
        tasks_per_probe=tasks_per_probe,
        token_mode=token_mode,
        rate_per_second=rate_per_second,
        faults=faults,
        hmac_keys=hmac_keys,
        retain_seconds=retain_seconds,
    )
    async with serve_simulator(sim, host, port, advance_every=advance_every) as url:
        log.info("Boro simulator serving %s (seed %d, %s tokens)", url, seed, token_mode)
        if on_ready is not None:
            on_ready(url)
        await asyncio.Event().wait()
