"""Liveness and readiness: what the poll loop and the sinks report (served by :mod:`borobridge.health_http`).

:class:`Health` is plain state with an injected clock; the poll loop and the sinks tell it how things went.

- **Live** while the poll loop completes cycles (failed ones count: the loop is turning) at most ``stall_after``
  seconds apart. A bridge that is not live is stuck and should be restarted.
- **Ready** once the cursors are restored, while Boro polls succeed (failures younger than ``boro_grace`` are
  tolerated, except a refusal of the bridge itself, which only a fixed setting ends) and every expected sink
  acknowledged its last delivery (a delivery that has not succeeded within ``sink_bound`` of the start of the first
  one since the last success — failed or still waiting — makes it unready; a sink that never answered gets
  ``sink_bound`` from its registration), no stream is held back because a sink refuses its events, and no
  dependency is still unreachable at start-up; with shards, while the process is a member of its shard group with
  an assignment (maybe of no shard: a spare replica is ready to take over). The reason says what is wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from borobridge.checkpoint import Checkpoint
from borobridge.errors import BridgeError
from borobridge.failure_log import FailureLog
from borobridge.metrics import Metrics
from borobridge.sinks import Batch, Sink

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_POLL_INTERVAL: Final = 2.0
AWAITING: Final = "a delivery has had no answer yet"


@dataclass(frozen=True, slots=True)
class Failing:
    """A run of failures: when it began, the latest reason, and the settings to fix when Boro refuses the bridge."""

    since: float
    reason: str
    fix: str | None = None


@dataclass(slots=True)
class _Sink:
    registered_at: float
    acknowledged: bool = False
    failing: Failing | None = None


class Health:
    """What /livez and /readyz report, updated by the poll loop and the sinks."""

    def __init__(
        self,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        stall_after: float | None = None,
        boro_grace: float | None = None,
        sink_bound: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after = stall_after if stall_after is not None else max(60.0, 10 * poll_interval)
        self.boro_grace = boro_grace if boro_grace is not None else max(30.0, 5 * poll_interval)
        self.sink_bound = sink_bound if sink_bound is not None else max(60.0, 10 * poll_interval)
        self._clock = clock
        self._last_progress = clock()
        self._restored = False
        self._boro_ok = False
        self._boro_failing: Failing | None = None
        self._sinks: dict[str, _Sink] = {}
        self._unreachable: dict[str, str] = {}
        self._held: dict[str, str] = {}
        self._group: str | None = None  # why the process is not (yet) in its shard group; None: in it, or no group

    def dependency_unreachable(self, name: str, reason: str) -> None:
        """Dependency ``name`` cannot be reached at start-up; readiness names it until :meth:`dependency_reached`.

        Each attempt counts as progress: a bridge that keeps trying is not stuck, and restarting it would not help.
        """
        self._unreachable[name] = reason
        self.progress()

    def dependency_reached(self, name: str) -> None:
        """Dependency ``name`` answered."""
        self._unreachable.pop(name, None)

    def group_waiting(self, reason: str) -> None:
        """The process has no assignment from its shard group (joining, or a rebalance under way)."""
        self._group = reason

    def group_joined(self) -> None:
        """The shard group assigned this process its shards."""
        self._group = None

    def forget_sink(self, name: str) -> None:
        """Sink ``name`` is gone (a shard handed over): readiness no longer depends on it."""
        self._sinks.pop(name, None)

    def mark_restored(self) -> None:
        """The cursors are restored; polling starts (this counts as progress)."""
        self._restored = True
        self.progress()

    def progress(self) -> None:
        """The poll loop completed a cycle, successful or not."""
        self._last_progress = self._clock()

    def boro_succeeded(self) -> None:
        """A poll cycle read Boro successfully."""
        self._boro_ok = True
        self._boro_failing = None

    def boro_failed(self, reason: str, *, fix: str | None = None) -> None:
        """A poll cycle could not read Boro; ``fix``: Boro refuses the bridge until these settings are fixed."""
        self._boro_failing = _continue(self._boro_failing, self._clock(), reason, fix)

    def expect_sink(self, name: str) -> None:
        """Readiness from now on depends on sink ``name`` acknowledging its deliveries."""
        self._sinks.setdefault(name, _Sink(registered_at=self._clock()))

    def sink_delivering(self, name: str) -> None:
        """Sink ``name`` starts a delivery: a run of trouble starts now unless one is under way already."""
        sink = self._sink(name)
        if sink.failing is None:
            sink.failing = Failing(since=self._clock(), reason=AWAITING)

    def sink_succeeded(self, name: str) -> None:
        """Sink ``name`` acknowledged a delivery (or its restore)."""
        sink = self._sink(name)
        sink.acknowledged = True
        sink.failing = None

    def sink_failed(self, name: str, reason: str) -> None:
        """Sink ``name`` could not deliver."""
        sink = self._sink(name)
        sink.failing = _continue(sink.failing, self._clock(), reason)

    def stream_held(self, stream: str, reason: str) -> None:
        """A sink cannot take the events of ``stream``: readiness names it until :meth:`stream_released`."""
        self._held[stream] = reason

    def stream_released(self, stream: str) -> None:
        """The events of ``stream`` are delivered again."""
        self._held.pop(stream, None)

    def liveness(self) -> tuple[bool, str]:
        """``(True, "ok")``, or ``False`` with how long the poll loop has been stuck."""
        idle = self._clock() - self._last_progress
        if idle <= self.stall_after:
            return True, "ok"
        return False, f"the poll loop made no progress for {idle:.0f} s (limit {self.stall_after:.0f} s)"

    def readiness(self) -> tuple[bool, str]:
        """``(True, "ok")``, or ``False`` with every problem found, separated by ``; ``."""
        if self._unreachable:
            return False, "; ".join(f"{name}: {reason}" for name, reason in self._unreachable.items())
        if not self._restored:
            return False, "restoring the stream cursors"
        if self._group is not None:
            return False, self._group
        held = [f"stream {stream} is held back: {reason}" for stream, reason in self._held.items()]
        problems = [*self._boro_problems(), *self._sink_problems(), *held]
        return (False, "; ".join(problems)) if problems else (True, "ok")

    def _boro_problems(self) -> list[str]:
        failing = self._boro_failing
        if failing is not None and failing.fix is not None:
            return [
                f"Boro refuses the bridge for {self._age(failing):.0f} s: {failing.reason}; fix your configuration "
                f"({failing.fix})"
            ]
        if failing is not None and (not self._boro_ok or self._age(failing) > self.boro_grace):
            return [f"Boro polls failing for {self._age(failing):.0f} s: {failing.reason}"]
        if not self._boro_ok:
            return ["waiting for the first successful Boro poll"]
        return []

    def _sink_problems(self) -> list[str]:
        problems = [self._sink_problem(name, sink) for name, sink in self._sinks.items()]
        return [problem for problem in problems if problem is not None]

    def _sink_problem(self, name: str, sink: _Sink) -> str | None:
        if sink.failing is not None and self._age(sink.failing) > self.sink_bound:
            return f"sink {name} failing for {self._age(sink.failing):.0f} s: {sink.failing.reason}"
        waited = self._clock() - sink.registered_at
        if not sink.acknowledged and waited > self.sink_bound:
            return f"sink {name} has acknowledged nothing in {waited:.0f} s"
        return None

    def _sink(self, name: str) -> _Sink:
        self.expect_sink(name)
        return self._sinks[name]

    def _age(self, failing: Failing) -> float:
        return self._clock() - failing.since


def _continue(failing: Failing | None, now: float, reason: str, fix: str | None = None) -> Failing:
    """The run of failures goes on (or starts now), with the latest reason."""
    return Failing(since=failing.since if failing is not None else now, reason=reason, fix=fix)


class ReportingSink:
    """Wraps a sink and tells :class:`Health` how each restore and delivery of sink ``name`` went; with
    ``metrics``, each failure is also counted in ``borobridge_errors_total`` by its kind.

    The first failure of a run is logged once at WARNING, its end once at INFO (the poll loop says each retry).
    """

    def __init__(self, sink: Sink, health: Health, name: str, *, metrics: Metrics | None = None) -> None:
        self._inner = sink
        self._health = health
        self._name = name
        self._metrics = metrics
        self._failures = FailureLog(log)
        health.expect_sink(name)

    async def restore(self) -> dict[str, Checkpoint]:
        """The wrapped sink's checkpoints."""
        return await self._report(self._inner.restore())

    async def deliver(self, batch: Batch) -> None:
        """Deliver through the wrapped sink."""
        self._health.sink_delivering(self._name)
        await self._report(self._inner.deliver(batch))

    async def _report(self, work: Awaitable[T]) -> T:
        try:
            result = await work
        except BridgeError as error:
            self._health.sink_failed(self._name, str(error))
            if self._metrics is not None:
                self._metrics.errors.labels(error.kind).inc()
            if error.retriable:  # any other error stops the bridge, which says it on its way out
                message = "sink %s cannot deliver: %s; retrying until it answers"
                self._failures.failed(self._name, error, message, self._name, error)
            raise
        self._health.sink_succeeded(self._name)
        self._failures.ended(self._name, "sink %s delivers again", self._name)
        return result
