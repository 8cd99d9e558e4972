"""The webhook listener: ``POST /webhooks/boro/<project_id>`` rings the doorbell for a poll now.

A webhook is only a hint that something changed: its body is never published (it is logged at DEBUG), and what
the bridge delivers still comes from the poll. Answers: 204 accepted; 401 a missing or wrong APIAuth signature
(when ``webhook.hmac`` is set); 404 a project the bridge does not poll, or another path; 405 another method;
413 a body over ``webhook.max_body_bytes``. The signature is checked before the project, so an unsigned caller
learns nothing about which projects are polled. Each refusal is counted by reason and said at WARNING once per
reason until a webhook is accepted again.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from borobridge.asgi_server import Receive, Scope, Send, request_headers, request_uri, serve_asgi
from borobridge.boro import hmac_auth
from borobridge.doorbell import Doorbells
from borobridge.errors import ConfigError
from borobridge.metrics import Metrics
from borobridge.settings import WebhookHmacSettings, WebhookSettings

log = logging.getLogger(__name__)

PATH: Final = re.compile(r"^/webhooks/boro/(?P<project_id>[0-9]{1,18})/?$")
TEXT: Final = b"text/plain; charset=utf-8"
SIGNATURE_FIX: Final = "check webhook.hmac (key, access_id) against the key Boro signs with, and both clocks"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A webhook not accepted: the HTTP answer, the metric's reason label and the sentence logged."""

    status: int
    reason: str
    problem: str


class _AnyAccessId(Mapping[str, bytes]):
    """One key for every access id: with no ``access_id`` configured, the key alone decides."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __getitem__(self, access_id: str) -> bytes:
        return self._key

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def signature_keys(options: WebhookHmacSettings) -> Mapping[str, bytes]:
    """The access ids accepted and their key."""
    key = hmac_auth.decode_key(options.key.reveal())
    return {options.access_id: key} if options.access_id is not None else _AnyAccessId(key)


class WebhookApp:
    """ASGI application accepting Boro webhooks for the projects ``polled()`` names."""

    def __init__(
        self,
        options: WebhookSettings,
        doorbells: Doorbells,
        polled: Callable[[], Collection[int]],
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._options = options
        self._doorbells = doorbells
        self._polled = polled
        self._metrics = metrics
        self._clock = clock
        self._keys = signature_keys(options.hmac) if options.hmac is not None else None
        self._said: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        outcome = await self._handle(scope, receive)
        status, body = (204, b"") if outcome is None else (outcome.status, outcome.problem.encode() + b"\n")
        headers = [(b"content-type", TEXT), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> Refusal | None:
        match = PATH.match(scope["path"])
        if match is None:
            return Refusal(404, "path", "no such path; webhooks go to POST /webhooks/boro/<project_id>")
        if scope["method"] != "POST":
            return Refusal(405, "method", "method not allowed; Boro webhooks are POST requests")
        project_id = int(match["project_id"])
        body = await _read_body(scope, receive, self._options.max_body_bytes)
        refusal = self._check(scope, project_id, body)
        if refusal is not None:
            self._refused(project_id, refusal)
            return refusal
        self._accepted(project_id, body or b"")
        return None

    def _check(self, scope: Scope, project_id: int, body: bytes | None) -> Refusal | None:
        if body is None:
            limit = self._options.max_body_bytes
            return Refusal(413, "too_large", f"the body is larger than webhook.max_body_bytes ({limit} bytes)")
        problem = self._signature_problem(scope, body)
        if problem is not None:
            return Refusal(401, _signature_reason(problem), f"signature refused: {problem}; {SIGNATURE_FIX}")
        if project_id not in self._polled():
            return Refusal(404, "unknown_project", f"the bridge does not poll project {project_id}")
        return None

    def _signature_problem(self, scope: Scope, body: bytes) -> str | None:
        if self._keys is None or self._options.hmac is None:
            return None
        return hmac_auth.verify(
            scope["method"],
            request_uri(scope),
            request_headers(scope),
            body,
            keys=self._keys,
            now=self._clock(),
            max_age=self._options.hmac.max_skew,
        )

    def _refused(self, project_id: int, refusal: Refusal) -> None:
        self._metrics.webhooks_rejected.labels(refusal.reason).inc()
        level = logging.DEBUG if refusal.reason in self._said else logging.WARNING
        self._said.add(refusal.reason)
        log.log(level, "webhook for project %d refused (HTTP %d): %s", project_id, refusal.status, refusal.problem)

    def _accepted(self, project_id: int, body: bytes) -> None:
        if self._said:
            log.info("webhook for project %d accepted again", project_id)
            self._said.clear()
        log.debug("webhook for project %d: %r", project_id, body)
        self._metrics.webhooks_received.inc()
        self._doorbells.ring(project_id)


def _signature_reason(problem: str) -> str:
    """The metric label of a signature refusal, from the sentence :func:`hmac_auth.verify` gave."""
    lowered = problem.lower()
    if "content" in lowered:
        return "content_hash"
    if "date" in lowered:
        return "date"
    if "authorization" in lowered:
        return "unsigned"
    return "signature"


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it is known to exceed ``limit`` bytes (the rest is left unread)."""
    declared = request_headers(scope).get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@contextlib.asynccontextmanager
async def serve_webhooks(app: WebhookApp, host: str, port: int) -> AsyncIterator[str]:
    """Serve the webhook endpoint on ``host:port`` (0: any free port) while the block runs; yields the base URL.

    A port that cannot be bound is a :class:`~borobridge.errors.ConfigError` on ``webhook``.
    """
    async with contextlib.AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(serve_asgi(app, host, port, name="webhooks"))
        except OSError as exc:
            raise ConfigError([f"webhook.port: cannot listen on {host}:{port} ({exc.strerror or exc})"]) from exc
        yield url
