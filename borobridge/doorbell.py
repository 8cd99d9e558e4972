"""The doorbell: a webhook asks the poll loop to start its next cycle now, coalesced.

The poll loop sleeps on :meth:`Doorbell.sleep` between cycles; :meth:`Doorbell.ring` ends that sleep early. Each
pipeline (the one of a single process, or each shard's) has a doorbell of its own, and :class:`Doorbells` rings
only the one whose pipeline polls the webhook's project. Rings are coalesced: while a ring is waiting, further
rings add nothing, so at most one cycle runs and one waits whatever the number of webhooks. Two cycles a ring
brings forward start at least ``min_gap`` seconds apart, and a cycle that starts on the regular interval answers
the rings that came before it. A ring carries no data: every event still comes from the poll.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from borobridge.metrics import Metrics


class Doorbell:
    """Wakes the poll loop early; rung from the webhook listener, slept on by the poll loop."""

    def __init__(
        self,
        *,
        min_gap: float = 0.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_gap = min_gap
        self._metrics = metrics
        self._clock = clock
        self._rung = asyncio.Event()
        self._last_start = -math.inf

    @property
    def waiting(self) -> bool:
        """A ring waits for the next cycle to start."""
        return self._rung.is_set()

    def ring(self) -> None:
        """Ask for a cycle now; a ring already waiting absorbs this one."""
        if self._rung.is_set():
            if self._metrics is not None:
                self._metrics.webhooks_coalesced.inc()
            return
        self._rung.set()

    async def sleep(self, stop: asyncio.Event, delay: float, *, rings: bool = True) -> None:
        """Wait until ``stop`` is set, ``delay`` seconds pass, or a ring (no sooner than ``min_gap`` after the
        previous cycle started); the next cycle starts on return and answers every ring so far.

        ``rings=False`` (a backoff after a failed cycle) waits out ``delay``: webhooks must not hasten the retries
        of a Boro that fails."""
        deadline = self._clock() + delay
        await _until_set([stop, self._rung] if rings else [stop], delay)
        if self._rung.is_set() and not stop.is_set() and self._clock() < deadline:
            gap = self._last_start + self._min_gap - self._clock()
            await _until_set([stop], min(gap, deadline - self._clock()))
            if self._metrics is not None:
                self._metrics.polls_triggered.inc()
        self._rung.clear()
        self._last_start = self._clock()


class Doorbells:
    """One doorbell per pipeline, each rung only for the projects its pipeline polls; ``new`` makes each one (with
    the bridge's ``min_gap``)."""

    def __init__(self, new: Callable[[], Doorbell]) -> None:
        self._new = new
        self._bells: dict[int, tuple[Doorbell, Callable[[int], bool]]] = {}

    def open(self, key: int, polls: Callable[[int], bool]) -> Doorbell:
        """A new doorbell for the pipeline ``key`` (a shard's number, or 0), which polls the projects ``polls``
        names."""
        doorbell = self._new()
        self._bells[key] = (doorbell, polls)
        return doorbell

    def close(self, key: int) -> None:
        """The pipeline ``key`` stopped: its doorbell is rung no more."""
        self._bells.pop(key, None)

    def ring(self, project_id: int) -> None:
        """Ring the doorbell of each pipeline that polls ``project_id``."""
        for doorbell, polls in list(self._bells.values()):
            if polls(project_id):
                doorbell.ring()


async def _until_set(events: list[asyncio.Event], seconds: float) -> None:
    """Return once any of ``events`` is set, or after ``seconds`` (at once when it is not positive)."""
    if seconds <= 0 or any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
