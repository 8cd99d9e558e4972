"""What the log and the gauges say of how far the streams have read: a first start's history, and what the
reconciliation sweep found that the token path missed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from borobridge import reading
from borobridge.metrics import Metrics
from borobridge.reading import Position
from borobridge.streams import Stream
from borobridge.transitions import AlarmTransition

BACKFILL_LOG_INTERVAL = 60.0  # seconds between the progress lines of the history reads


def describe(position: Position) -> str:
    """Where a read stands, for a log line."""
    if position.snapshot:
        return f"the active-state snapshot (page {position.page})"
    if position.windows:
        window = position.windows[0]
        return f"period {window.low}..{'' if window.high is None else window.high}"
    return f"token {position.token}"


class ReadingProgress:
    """Says, through ``logger`` and ``metrics``, how far the committed reads of the streams have got."""

    def __init__(self, metrics: Metrics, logger: logging.Logger, clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._log = logger
        self._clock = clock
        self._next_line = 0.0
        self._live_lane_history: set[str] = set()  # streams whose live lane reads their history itself

    def committed(self, stream: Stream, *, was_reading: bool) -> None:
        """Set the stream's history gauge from its committed history read; say so once it reached the present.

        A history handed to the live lane (``first_start.history: first``, or no floor to split at) is followed
        through the live lane's period windows until they are read.
        """
        if was_reading and stream.committed_backfill is None and stream.committed.windows:
            self._live_lane_history.add(stream.id)
        history = self._history(stream)
        remaining = reading.backfill_remaining(history, stream.committed.clock)
        if remaining is not None:
            self._metrics.backfill_remaining.labels(stream.id).set(remaining)
        if history is None and (was_reading or stream.id in self._live_lane_history):
            self._live_lane_history.discard(stream.id)
            self._log.info("stream %s: history read up to the live alarms; the first start is complete", stream.id)

    def report(self, streams: Iterable[Stream]) -> None:
        """Every :data:`BACKFILL_LOG_INTERVAL`, one line per stream whose history is still being read."""
        now = self._clock()
        if now < self._next_line:
            return
        self._next_line = now + BACKFILL_LOG_INTERVAL
        for stream in streams:
            history = self._history(stream)
            if history is None:
                continue
            remaining = reading.backfill_remaining(history, stream.committed.clock)
            left = "unknown yet" if remaining is None else f"{remaining} s of Boro time"
            self._log.info("stream %s: reading history, at %s, %s to go", stream.id, describe(history), left)

    def _history(self, stream: Stream) -> Position | None:
        """The committed read of the stream's history still under way, in its own lane or the live one."""
        if stream.id in self._live_lane_history:
            return stream.committed if stream.committed.windows else None
        return stream.committed_backfill

    def reconciled(self, stream: Stream, missed: Iterable[AlarmTransition]) -> None:
        """Count and say each transition the sweep found that the token path missed."""
        for transition in missed:
            self._metrics.reconciled.labels(stream.id).inc()
            self._log.warning(
                "stream %s: the reconciliation sweep found record %d (%s) that the token path missed",
                stream.id,
                transition.record.id,
                transition.kind,
            )
