"""Combinations of the simulator's personalities and faults that several tests run against."""

from __future__ import annotations

import msgspec

from borobridge.simulator import Faults, Personality

HARDEST = Personality(
    token="reply_time",
    token_compare="exclusive",
    token_order="newest_first",
    period_order="newest_first",
    clock_offset=-300,
    probe_stops=0.05,
    stop_seconds=8,
    moving_records=0.2,
)
EVERYTHING_BUT_STOPS = msgspec.structs.replace(HARDEST, probe_stops=0.0)
SOME_FAULTS = Faults(http_5xx=0.05, malformed=0.05, error_item=0.05, repeat=0.2, burst=0.01)
