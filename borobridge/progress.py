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

    def committed(self, stream: Stream, *, was_reading: bool) -> None:
        """Set the stream's history gauge from its committed history read; say so once it reached the present."""
        remaining = reading.backfill_remaining(stream.committed_backfill, stream.committed.clock)
        if remaining is not None:
            self._metrics.backfill_remaining.labels(stream.id).set(remaining)
        if was_reading and stream.committed_backfill is None:
            self._log.info("stream %s: history read up to the live alarms; the first start is complete", stream.id)

    def report(self, streams: Iterable[Stream]) -> None:
        """Every :data:`BACKFILL_LOG_INTERVAL`, one line per stream whose history is still being read."""
        now = self._clock()
        if now < self._next_line:
            return
        self._next_line = now + BACKFILL_LOG_INTERVAL
        for stream in streams:
            if stream.committed_backfill is None:
                continue
            remaining = reading.backfill_remaining(stream.committed_backfill, stream.committed.clock)
            left = "unknown yet" if remaining is None else f"{remaining} s of Boro time"
            where = describe(stream.committed_backfill)
            self._log.info("stream %s: reading history, at %s, %s to go", stream.id, where, left)

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
