"""Sinks: what one poll round hands them, and the interface every sink offers (JSON lines and MQTT live here,
Kafka in :mod:`borobridge.kafka`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from borobridge.boro.queries import RejectedRecord
from borobridge.checkpoint import Checkpoint
from borobridge.events import CloudEvent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not become an event, and the stream it came from."""

    stream: str
    record: RejectedRecord


@dataclass(kw_only=True)
class Batch:
    """Everything one round delivers at once: events in order, dead letters and the new cursors."""

    events: list[CloudEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.dead_letters or self.checkpoints)


class Sink(Protocol):
    """A sink that delivers a batch and its checkpoints together, and restores them at start."""

    async def restore(self) -> dict[str, Checkpoint]:
        """The last committed checkpoint of every stream."""
        ...

    async def deliver(self, batch: Batch) -> None:
        """Deliver the batch durably, checkpoints included; raise SinkError and deliver nothing on failure."""
        ...
