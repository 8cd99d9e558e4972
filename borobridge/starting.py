"""Start-up of a dependency that may not answer yet: entered again with backoff until it does, or a signal stops
the bridge.

Boro and MQTT are retried by their loops; a sink that must be open before the first poll (Kafka, which holds the
cursors) is retried here. Only ``unreachable`` errors are retried: a refusal (a bad TLS file, SASL refused) is a
configuration to fix and fails at once. Meanwhile /readyz names the dependency and why, and the log says it once
when it fails and once when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TypeVar

from borobridge.backoff import Backoff
from borobridge.errors import BridgeError
from borobridge.failure_log import FailureLog
from borobridge.health import Health
from borobridge.retry import retry_delay

log = logging.getLogger(__name__)
T = TypeVar("T")


class Starting:
    """Enters resources on behalf of the composition root, retrying those that cannot be reached yet."""

    def __init__(self, health: Health, stop: asyncio.Event, backoff: Backoff) -> None:
        self._health = health
        self._stop = stop
        self._backoff = backoff
        self._failures = FailureLog(log)

    async def enter(
        self,
        stack: AsyncExitStack,
        resource: Callable[[], AbstractAsyncContextManager[T]],
        name: str,
        unreachable: type[BridgeError],
    ) -> T | None:
        """The entered resource, once it answers; None when ``stop`` is set first."""
        while not self._stop.is_set():
            try:
                entered = await self._until_stopped(stack.enter_async_context(resource()))
            except unreachable as error:
                await self._wait(name, error)
                continue
            if entered is not None:
                self._answered(name)
            return entered
        return None

    async def _wait(self, name: str, error: BridgeError) -> None:
        delay = retry_delay(error, self._backoff)
        if delay is None:
            raise error
        self._health.dependency_unreachable(name, str(error))
        message = "%s cannot be reached at start-up: %s; retrying with backoff until it answers"
        self._failures.failed(name, error, message, name, error)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()

    def _answered(self, name: str) -> None:
        self._backoff.reset()
        self._health.dependency_reached(name)
        self._failures.ended(name, "%s answers: starting", name)

    async def _until_stopped(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None once ``stop`` is set first (``work`` is then cancelled)."""
        attempt = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([attempt, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, BridgeError):
                await attempt
            return None
        return attempt.result()
