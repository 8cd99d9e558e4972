"""Streams held back because a sink cannot take their events, each on a backoff of its own.

A stream whose events a sink refuses (a project's events topic with the wrong policy) is not read until its
backoff expires, so that the other streams' events go on being delivered without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from borobridge.backoff import Backoff


@dataclass(slots=True)
class _Hold:
    backoff: Backoff
    until: float = 0.0


class HeldStreams:
    """When each held stream may be read again (``clock`` time), and how often it was held in a row."""

    def __init__(self, initial: float, maximum: float, clock: Callable[[], float]) -> None:
        self._initial = initial
        self._maximum = maximum
        self._clock = clock
        self._holds: dict[str, _Hold] = {}

    def hold(self, stream: str) -> float:
        """Hold ``stream`` back for its next backoff delay, which is returned."""
        entry = self._holds.setdefault(stream, _Hold(Backoff(self._initial, self._maximum)))
        delay = entry.backoff.next_delay()
        entry.until = self._clock() + delay
        return delay

    def waiting(self) -> Iterator[str]:
        """The streams whose backoff has not expired yet."""
        now = self._clock()
        return (stream for stream, entry in self._holds.items() if entry.until > now)

    def release(self, stream: str) -> bool:
        """``stream`` delivered again: forget its backoff; True when it was held."""
        return self._holds.pop(stream, None) is not None
