"""Serve an ASGI application with uvicorn inside the running program.

The host program keeps its own signal handlers and logging: uvicorn installs neither, and its loggers stay at
WARNING. Port 0 binds any free port; the base URL yielded names the port actually bound. With a certificate and
its key (PEM files) it serves HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, MutableMapping
from typing import Any, Final

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STARTUP_TIMEOUT: Final = 10.0


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, host: str, port: int, *, name: str, certfile: str | None = None, keyfile: str | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` while the block runs; yields ``http://host:port`` as bound.

    ``name`` names the serving task and appears in the error raised when the server fails to start. With
    ``certfile`` (and ``keyfile``, unless the key is in the same file) it serves HTTPS and yields ``https://``.
    """
    server = _InProcessServer(_config(app, certfile, keyfile))
    with contextlib.closing(_bind(host, port)) as sock:
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(server.serve(sockets=[sock]), name=name)
            try:
                await _wait_started(server, serving, name)
                yield base_url(sock, scheme="https" if certfile else "http")
            finally:
                server.should_exit = True


def base_url(sock: socket.socket, scheme: str = "http") -> str:
    """``http://host:port`` (or another scheme) of a bound socket, with IPv6 hosts in brackets."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def _config(app: ASGIApp, certfile: str | None, keyfile: str | None) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


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


async def _wait_started(server: uvicorn.Server, serving: asyncio.Task[None], name: str) -> None:
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while not server.started:
            if serving.done():
                raise RuntimeError(f"the HTTP server {name} stopped while starting") from serving.exception()
            await asyncio.sleep(0.01)


def request_uri(scope: Scope) -> str:
    """The request's path and query string as the client sent them (what an HMAC signature covers)."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; a header sent more than once has its values joined by commas."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
