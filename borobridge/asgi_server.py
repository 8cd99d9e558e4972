"""Serve an ASGI application inside the running program, through hypercorn's documented embedding API.

``hypercorn.asyncio.serve`` given a shutdown trigger installs no signal handlers: the host program keeps its own
and ends the listener by leaving the ``serve_asgi`` block. Hypercorn's error log goes to the ``hypercorn.error``
logger of the host's logging set-up; there is no access log. The socket is bound and listening before the block
starts, so the base URL yielded (port 0 binds any free port) accepts connections at once. With a certificate and
its key (PEM files) it serves HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Final, cast

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GRACEFUL_TIMEOUT: Final = 1.0
BACKLOG: Final = 128


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, host: str, port: int, *, name: str, certfile: str | None = None, keyfile: str | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` while the block runs; yields ``http://host:port`` as bound.

    ``name`` names the serving task. With ``certfile`` (and ``keyfile``, unless the key is in the same file) it
    serves HTTPS and yields ``https://``; a certificate that cannot be loaded raises here, before anything listens.
    """
    config = _config(certfile, keyfile)
    config.create_ssl_context()  # fails now on an unreadable certificate rather than inside the serving task
    stop = asyncio.Event()
    with contextlib.closing(_listen(host, port)) as sock:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_serve(app, config, sock, stop), name=name)
            try:
                yield base_url(sock, scheme="https" if certfile else "http")
            finally:
                stop.set()


def base_url(sock: socket.socket, scheme: str = "http") -> str:
    """``http://host:port`` (or another scheme) of a bound socket, with IPv6 hosts in brackets."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def _serve(app: ASGIApp, config: Config, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve on a duplicate of ``sock`` (hypercorn closes its copy) until ``stop`` is set."""
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    await serve(cast(ASGIFramework, app), config, shutdown_trigger=stop.wait, mode="asgi")


def _config(certfile: str | None, keyfile: str | None) -> Config:
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    config.alpn_protocols = ["http/1.1"]
    config.certfile = certfile
    config.keyfile = keyfile if keyfile is not None or certfile is None else certfile
    return config


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


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
