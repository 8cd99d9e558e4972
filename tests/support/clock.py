"""A clock for tests and in-process benchmarks: time moves only when they say so."""

from __future__ import annotations


class ManualClock:
    """Time that moves only when the test says so (``clock.now += 1.0``); callable like ``time.monotonic``."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
