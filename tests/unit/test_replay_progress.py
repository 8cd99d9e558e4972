"""How often ``borobridge replay`` reports progress off a terminal, and the times it prints."""

from __future__ import annotations

from borobridge.replay_progress import Throttle, moment


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_is_due_after_the_seconds_or_the_events_whichever_comes_first() -> None:
    clock = FakeClock()
    throttle = Throttle(every_seconds=10, every_events=100, clock=clock)
    clock.now += 9.9
    assert not throttle.due(99)
    clock.now += 0.1
    assert throttle.due(99), "ten seconds since the start"
    assert not throttle.due(198)
    assert throttle.due(199), "a hundred events since the last line"
    clock.now += 10
    assert throttle.due(199), "ten seconds since the last line, even without new events"


def test_times_are_printed_as_since_takes_them_back() -> None:
    assert moment(1763596800) == "2025-11-20T00:00:00Z"
