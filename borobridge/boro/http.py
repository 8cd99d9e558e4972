"""The HTTP client the bridge reads Boro with: ``boro.tls``'s CA and client certificate, and TLS failures named.

A failed handshake surfaces from httpx as ``ConnectError`` carrying OpenSSL's words; this client replaces them by
what failed and which setting fixes it (:func:`borobridge.tls.explain`), keeping the original as the cause.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client import Histogram

from borobridge import tls
from borobridge.metrics import TimedTransport
from borobridge.settings import BoroSettings


class BoroHttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose TLS failures say what failed (the system's CAs unless ``boro.tls``); with
    ``timing``, each exchange is observed in that histogram."""

    def __init__(self, settings: BoroSettings, timing: Histogram | None = None) -> None:
        context = tls.client_context(settings.tls, "boro.tls") if settings.tls is not None else None
        transport = httpx.AsyncHTTPTransport(verify=context if context is not None else True)
        super().__init__(transport=transport if timing is None else TimedTransport(transport, timing))

    async def send(self, request: httpx.Request, **options: Any) -> httpx.Response:
        """Send as httpx does; a ConnectError caused by TLS names its cause."""
        try:
            return await super().send(request, **options)
        except httpx.ConnectError as exc:
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            explained = tls.explain(exc, "boro.tls", f"{request.url.host}:{port}")
            if explained is None:
                raise
            raise httpx.ConnectError(explained, request=request) from exc
