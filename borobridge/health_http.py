"""The health listener: ``GET /livez``, ``GET /readyz`` and ``GET /metrics`` over HTTP.

``/livez`` and ``/readyz`` answer 200, or 503 with the reason as text, from :class:`~borobridge.health.Health`;
``/metrics`` answers in the Prometheus text format, or OpenMetrics when the scraper asks for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from borobridge.asgi_server import Receive, Scope, Send, serve_asgi
from borobridge.errors import ConfigError
from borobridge.health import Health

TEXT: Final = b"text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    """What the health app answers."""

    status: int
    body: bytes
    content_type: bytes = TEXT
    headers: tuple[tuple[bytes, bytes], ...] = ()


class HealthApp:
    """ASGI application: ``GET /livez``, ``GET /readyz``, ``GET /metrics``; 404 elsewhere, 405 for other methods."""

    def __init__(self, health: Health, registry: CollectorRegistry) -> None:
        self._health = health
        self._registry = registry
        self._routes: dict[str, Callable[[Scope], Response]] = {
            "/livez": lambda _: _probe(health.liveness()),
            "/readyz": lambda _: _probe(health.readiness()),
            "/metrics": self._metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = self.respond(scope)
        headers = [(b"content-type", response.content_type), (b"cache-control", b"no-store"), *response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def respond(self, scope: Scope) -> Response:
        """The response to one request scope."""
        route = self._routes.get(scope["path"])
        if route is None:
            return Response(404, b"not found; try /livez, /readyz or /metrics\n")
        if scope["method"] != "GET":
            return Response(405, b"method not allowed; use GET\n", headers=((b"allow", b"GET"),))
        return route(scope)

    def _metrics(self, scope: Scope) -> Response:
        encode, content_type = choose_encoder(_header(scope, b"accept"))
        return Response(200, encode(self._registry), content_type.encode("latin-1"))


def _probe(verdict: tuple[bool, str]) -> Response:
    healthy, reason = verdict
    return Response(200 if healthy else 503, reason.encode() + b"\n")


def _header(scope: Scope, name: bytes) -> str:
    values = [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]
    return ", ".join(values)


@contextlib.asynccontextmanager
async def serve_health(health: Health, registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[str]:
    """Serve /livez, /readyz and /metrics on ``host:port`` (0: any free port) while the block runs.

    Yields the base URL; a port that cannot be bound is a :class:`~borobridge.errors.ConfigError` on ``health``.
    """
    async with contextlib.AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(serve_asgi(HealthApp(health, registry), host, port, name="health"))
        except OSError as exc:
            raise ConfigError([f"health.port: cannot listen on {host}:{port} ({exc.strerror or exc})"]) from exc
        yield url
