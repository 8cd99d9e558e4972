"""What the log and the gauges say of how far the streams have read (:class:`borobridge.progress.ReadingProgress`):
the history gauge and its end, a progress line per history every interval, and the sweep's finds."""

from __future__ import annotations

import logging
from typing import Final

import pytest

from borobridge.metrics import Metrics
from borobridge.progress import BACKFILL_LOG_INTERVAL, ReadingProgress, describe
from borobridge.reading import Position, Window
from borobridge.streams import Stream, open_stream
from borobridge.transitions import AlarmTransition, Transition
from tests.support.clock import ManualClock
from tests.support.records import decoded
from tests.support.settings import bridge_settings

LOGGER: Final = "borobridge.progress.test"
HISTORY: Final = Position(windows=(Window(1_000, 4_600),))  # an hour of history still to read, bounded


def stream_of(project_id: int, history: Position | None) -> Stream:
    options = bridge_settings()
    stream = open_stream("boro-test", project_id, options.boro, None, options.first_start)
    stream.committed_backfill = history
    return stream


def remaining(metrics: Metrics, stream: Stream) -> float | None:
    return metrics.registry.get_sample_value("borobridge_backfill_remaining_seconds", {"stream": stream.id})


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


def test_positions_are_described_for_a_log_line() -> None:
    assert describe(Position(snapshot=True, page=3)) == "the active-state snapshot (page 3)"
    assert describe(HISTORY) == "period 1000..4600"
    assert describe(Position(windows=(Window(1_000),))) == "period 1000.."
    assert describe(Position(token=77)) == "token 77"


def test_a_progress_line_per_history_read_every_interval(log: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    progress = ReadingProgress(Metrics(), logging.getLogger(LOGGER), clock)
    streams = [stream_of(23, HISTORY), stream_of(24, None)]
    progress.report(streams)
    clock.now += BACKFILL_LOG_INTERVAL - 1
    progress.report(streams)
    assert [r.getMessage() for r in log.records] == [
        "stream boro-test/23: reading history, at period 1000..4600, 3600 s of Boro time to go"
    ]
    clock.now += 1
    progress.report(streams)
    assert len(log.records) == 2


def test_the_history_gauge_follows_the_committed_history_and_its_end_is_said_once(
    log: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    progress = ReadingProgress(metrics, logging.getLogger(LOGGER), ManualClock())
    stream = stream_of(23, HISTORY)
    progress.committed(stream, was_reading=True)
    assert remaining(metrics, stream) == 3_600
    assert log.records == []
    stream.committed_backfill = None
    progress.committed(stream, was_reading=True)
    progress.committed(stream, was_reading=False)
    assert remaining(metrics, stream) == 0
    assert [r.getMessage() for r in log.records] == [
        "stream boro-test/23: history read up to the live alarms; the first start is complete"
    ]


def test_each_transition_the_sweep_found_is_counted_and_said(log: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    progress = ReadingProgress(metrics, logging.getLogger(LOGGER), ManualClock())
    stream = stream_of(23, None)
    found = [AlarmTransition(kind, decoded(7).record, b"{}") for kind in (Transition.RAISED, Transition.CLEARED)]
    progress.reconciled(stream, found)
    count = metrics.registry.get_sample_value("borobridge_reconciled_transitions_total", {"stream": stream.id})
    assert count == 2
    assert [(r.levelno, r.getMessage()) for r in log.records] == [
        (
            logging.WARNING,
            f"stream {stream.id}: the reconciliation sweep found record 7 ({kind}) that the token path missed",
        )
        for kind in ("raised", "cleared")
    ]


def test_a_history_the_live_lane_reads_itself_is_followed_until_the_live_lane_catches_up(
    log: pytest.LogCaptureFixture,
) -> None:
    """``first_start.history: first``: once the snapshot is read the live lane reads the history by period, so the
    gauge follows the live lane's windows and the first start is complete only when they are read."""
    metrics = Metrics()
    progress = ReadingProgress(metrics, logging.getLogger(LOGGER), ManualClock())
    stream = stream_of(23, Position(windows=(Window(1_000),)))
    stream.committed_backfill = None  # handed to the live lane with the snapshot's round
    stream.committed = Position(token=9, clock=4_600, windows=(Window(1_000),))
    progress.committed(stream, was_reading=True)
    assert remaining(metrics, stream) == 3_600
    progress.report([stream])
    stream.committed = Position(token=9, clock=4_600, windows=(Window(3_000),))
    progress.committed(stream, was_reading=False)
    assert remaining(metrics, stream) == 1_600
    assert [r.getMessage() for r in log.records] == [
        "stream boro-test/23: reading history, at period 1000.., 3600 s of Boro time to go"
    ]
    stream.committed = Position(token=12, clock=4_610)
    progress.committed(stream, was_reading=False)
    progress.committed(stream, was_reading=False)
    assert remaining(metrics, stream) == 0
    assert [r.getMessage() for r in log.records][1:] == [
        "stream boro-test/23: history read up to the live alarms; the first start is complete"
    ]
