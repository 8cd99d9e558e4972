"""The simulator's misbehaviour: HTTP errors, throttling, slow and malformed replies, error items, repeats and
bursts.

Faults are drawn from a generator seeded by the seed, separate from the world's, so the same seed gives the same
world whatever faults are switched on; a faulted reply never changes what later replies return.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import msgspec

from borobridge.simulator.world import JSON

BURST_SIZE = (101, 250)
NGINX_503 = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
ERROR_ITEMS: tuple[str | JSON, ...] = (
    "Internal server error",
    "database is temporarily unavailable",
    {"code": 500, "message": "internal error while reading alarms"},
)


class Faults(msgspec.Struct, frozen=True, kw_only=True):
    """Probabilities (0..1) of misbehaviour, drawn per request (per TaskAlarms item for ``error_item`` and
    ``repeat``, per ``advance`` for ``burst``).

    ``retry_after`` (seconds, fractions allowed so tests stay fast) goes in the 429 ``Retry-After`` header;
    ``slow_seconds`` is the delay a slow reply asks the HTTP layer to wait before answering.
    """

    http_5xx: float = 0.0
    http_429: float = 0.0
    retry_after: float = 1.0
    slow: float = 0.0
    slow_seconds: float = 2.0
    malformed: float = 0.0
    error_item: float = 0.0
    repeat: float = 0.0
    burst: float = 0.0

    def __post_init__(self) -> None:
        for name in ("http_5xx", "http_429", "slow", "malformed", "error_item", "repeat", "burst"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be a probability between 0 and 1, got {rate}")
        if self.retry_after < 0 or self.slow_seconds < 0:
            raise ValueError("Faults.retry_after and Faults.slow_seconds must not be negative")


class RequestFaults(NamedTuple):
    http_5xx: bool
    http_429: bool
    slow: bool
    malformed: bool


class ItemFaults(NamedTuple):
    error: str | JSON | None
    repeat: bool


class FaultyItemError(Exception):
    """``Faults.error_item`` struck: the item carries ``payload`` as its ``error``."""

    def __init__(self, payload: str | JSON) -> None:
        super().__init__(str(payload))
        self.payload = payload


def roll_request_faults(rng: random.Random, faults: Faults) -> RequestFaults:
    """Which of the per-request faults strike this request."""
    draws = [rng.random() for _ in range(4)]
    rates = (faults.http_5xx, faults.http_429, faults.slow, faults.malformed)
    return RequestFaults(*(draw < rate for draw, rate in zip(draws, rates, strict=True)))


def roll_item_faults(rng: random.Random, faults: Faults) -> ItemFaults:
    """Whether this TaskAlarms item is an error (and which) and whether it repeats records."""
    error = rng.random() < faults.error_item
    repeat = rng.random() < faults.repeat
    payload = rng.choice(ERROR_ITEMS)
    return ItemFaults(payload if error else None, repeat)


def mangle(body: bytes, rng: random.Random) -> bytes:
    """A malformed reply: ``body`` cut in half, followed by garbage, or empty."""
    variant = rng.randrange(3)
    if variant == 0:
        return body[: max(len(body) // 2, 1)]
    if variant == 1:
        return body + b"}{"
    return b""
