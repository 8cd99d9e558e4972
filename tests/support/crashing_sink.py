"""A sink that keeps what it delivers as bytes and dies when told: the process crashing around a delivery."""

from __future__ import annotations

from typing import Any

import msgspec

from borobridge.checkpoint import Checkpoint
from borobridge.sinks import Batch


class Crash(Exception):  # noqa: N818 - the process dying, not an error the bridge handles
    """The process died."""


class DurableSink:
    """Keeps delivered events and checkpoints as bytes; dies (raises ``Crash``) on the deliveries it is told: before
    writing an odd-numbered one, after writing an even-numbered one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.checkpoints: dict[str, bytes] = {}
        self.deliveries = 0
        self.crash_at: set[int] = set()

    async def restore(self) -> dict[str, Checkpoint]:
        return self.saved()

    def saved(self) -> dict[str, Checkpoint]:
        """The checkpoints written so far, read back from their bytes."""
        return {stream: msgspec.json.decode(raw, type=Checkpoint) for stream, raw in self.checkpoints.items()}

    async def deliver(self, batch: Batch) -> None:
        self.deliveries += 1
        crash = self.deliveries in self.crash_at
        if crash and self.deliveries % 2:
            raise Crash  # before anything was written
        self.events += [msgspec.json.decode(event.structured()) for event in batch.events]
        self.checkpoints |= {c.stream: msgspec.json.encode(c) for c in batch.checkpoints}
        if crash:
            raise Crash  # after it was written, before the bridge heard of it
