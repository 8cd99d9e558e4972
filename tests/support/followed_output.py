"""What a running bridge process has delivered so far: its JSON-lines output read as it grows, its history gauges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.scraped_metrics import sample_values

BACKFILL_GAUGE = "borobridge_backfill_remaining_seconds"


class OutputFollower:
    """The complete lines of a JSON-lines file a running bridge appends to, read from where the last read ended."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._events: list[dict[str, Any]] = []
        self._ids: set[str] = set()

    def ids(self) -> set[str]:
        """The ids of every event written so far."""
        self._read_on()
        return set(self._ids)

    async def read_ids(self) -> set[str]:
        """:meth:`ids`, for helpers that await their reader."""
        return self.ids()

    def events(self) -> list[dict[str, Any]]:
        """Every event written so far, in the order written."""
        self._read_on()
        return list(self._events)

    def _read_on(self) -> None:
        if not self._path.exists():
            return
        with self._path.open("rb") as file:
            file.seek(self._offset)
            complete, newline, _ = file.read().rpartition(b"\n")
        self._offset += len(complete) + len(newline)
        for line in complete.splitlines():
            if line.strip():
                event = json.loads(line)
                self._events.append(event)
                self._ids.add(event["id"])


async def backfill_remaining(health: httpx.AsyncClient) -> dict[str, float]:
    """Seconds of Boro time each stream's history read still has to go, by stream, scraped from /metrics."""
    response = await health.get("/metrics")
    response.raise_for_status()
    return {
        dict(labels)["stream"]: value
        for (name, labels), value in sample_values(response.text).items()
        if name == BACKFILL_GAUGE
    }
