"""Exponential backoff with jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each drawn between half and all of its ceiling."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self._initial = initial
        self._maximum = maximum
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures in a row since the last success."""
        return self._failures

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count a failure and return how long to wait; a server's Retry-After is a floor."""
        ceiling = min(self._maximum, self._initial * 2**self._failures)
        self._failures += 1
        delay = self._rng.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after) if retry_after is not None else delay

    def longest(self, retry_after: float | None = None) -> float:
        """Count a failure that asking again soon cannot cure, and return the maximum delay (or a later Retry-After)."""
        self._failures += 1
        return max(self._maximum, retry_after) if retry_after is not None else self._maximum

    def reset(self) -> None:
        """Forget past failures after a success."""
        self._failures = 0
