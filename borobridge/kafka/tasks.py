"""Bounded waits on the Kafka client's work, which may ignore cancellation while the broker is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from borobridge.kafka.errors import CLIENT_ERRORS

T = TypeVar("T")

STOP_TIMEOUT: Final = 10.0
CANCEL_GRACE: Final = 1.0

_abandoned: set[asyncio.Task[Any]] = set()


async def bounded(work: Coroutine[Any, Any, T], seconds: float) -> T:
    """Await ``work`` for at most ``seconds``, then give up on it (TimeoutError).

    aiokafka shields its transaction commit and abort from cancellation and waits for the coordinator without
    limit, so a plain timeout cannot interrupt it while the broker is down. The work runs as its own task; a
    task that overruns is cancelled and left to end on its own, held until it does (:func:`wait_abandoned`).
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait([task], timeout=seconds)
    if done:
        if task.cancelled():  # by aiokafka itself: a stop that cancels its sender re-raises that cancellation
            raise TimeoutError("Kafka work was cancelled before it ended")
        return task.result()
    task.cancel()
    await asyncio.wait([task], timeout=CANCEL_GRACE)  # most work ends at once: no stop may run beside it
    if task.done():
        _forget(task)
        raise TimeoutError(f"no answer from Kafka within {seconds:g} s")
    _abandoned.add(task)
    task.add_done_callback(_forget)
    raise TimeoutError(f"no answer from Kafka within {seconds:g} s")


async def wait_abandoned() -> None:
    """Let work given up on end, now that the broker may answer again, so that it closes its connections."""
    if _abandoned:
        await asyncio.wait(list(_abandoned), timeout=STOP_TIMEOUT)


async def stop_quietly(stop: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[None]]) -> None:
    """Stop a client that may have failed, then close its connections; a stop that fails or hangs changes nothing.

    A stop that fails half-way (the sender re-raises what its last request met) leaves the connections and the
    metadata task open: they are closed in any case.
    """
    with contextlib.suppress(*CLIENT_ERRORS, TimeoutError, OSError, AssertionError):  # aiokafka asserts its states
        await bounded(_awaited(stop), STOP_TIMEOUT)
    with contextlib.suppress(*CLIENT_ERRORS, TimeoutError, OSError):
        await bounded(_awaited(close), STOP_TIMEOUT)


async def _awaited(call: Callable[[], Awaitable[None]]) -> None:
    await call()


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's failure as seen: it was reported with its round, or is of no interest."""
    if not future.cancelled():
        future.exception()


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()
