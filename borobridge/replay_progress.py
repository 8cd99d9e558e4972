"""What ``borobridge replay`` says on stderr: progress lines at a bounded rate, the summary, where to resume."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

PROGRESS_SECONDS: Final = 10.0
PROGRESS_EVENTS: Final = 10_000


@dataclass(frozen=True)
class ReplayProgress:
    """How far a replay got: every change before ``reached`` (Boro time) is sent, ``events`` in all."""

    reached: int
    events: int
    projects_done: int
    projects: int


def moment(unix: int) -> str:
    """A Unix time as RFC 3339 UTC, the form ``--since`` takes back."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def progress_line(progress: ReplayProgress, *, dry_run: bool) -> str:
    verb = "counted" if dry_run else "sent"
    return (
        f"borobridge: replay up to {moment(progress.reached)}: {progress.events} events {verb}, "
        f"{progress.projects_done} of {progress.projects} projects done"
    )


def summary_line(events: int, *, dry_run: bool) -> str:
    if dry_run:
        return f"borobridge: dry run: replay would send {events} events; nothing was sent"
    return f"borobridge: replayed {events} events"


def resume_line(progress: ReplayProgress, *, dry_run: bool) -> str:
    verb = "counted" if dry_run else "sent"
    return (
        f"borobridge: interrupted after {progress.events} events {verb}; to finish, run the same replay with "
        f"--since {moment(progress.reached)}"
    )


@dataclass
class Throttle:
    """Says when a progress line is due: ``every_seconds`` or ``every_events`` after the last one.

    A replay of n events over t seconds prints at most n / every_events + t / every_seconds lines.
    """

    every_seconds: float = PROGRESS_SECONDS
    every_events: int = PROGRESS_EVENTS
    clock: Callable[[], float] = time.monotonic
    _last_time: float = field(init=False)
    _last_events: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._last_time = self.clock()

    def due(self, events: int) -> bool:
        now = self.clock()
        if now - self._last_time < self.every_seconds and events - self._last_events < self.every_events:
            return False
        self._last_time, self._last_events = now, events
        return True


class Report:
    """The replay's lines on ``stream``: a status line rewritten in place on a terminal, else throttled lines."""

    def __init__(self, stream: TextIO, throttle: Throttle, *, since: int, dry_run: bool) -> None:
        self._stream = stream
        self._throttle = throttle
        self._dry_run = dry_run
        self._on_terminal = stream.isatty()
        self._last = ReplayProgress(since, 0, 0, 0)

    def progress(self, progress: ReplayProgress) -> None:
        self._last = progress
        if self._on_terminal:
            print("\r" + progress_line(progress, dry_run=self._dry_run), end="", file=self._stream, flush=True)
        elif self._throttle.due(progress.events):
            print(progress_line(progress, dry_run=self._dry_run), file=self._stream, flush=True)

    def finished(self, events: int) -> None:
        self._end(summary_line(events, dry_run=self._dry_run))

    def interrupted(self) -> None:
        self._end(resume_line(self._last, dry_run=self._dry_run))

    def _end(self, line: str) -> None:
        print(("\n" if self._on_terminal else "") + line, file=self._stream)
