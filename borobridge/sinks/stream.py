"""The embedded default's sink: CloudEvents as JSON lines on stdout or in a file, cursor in a local file.

With a file, delivery is exactly-once across crashes: the state file records how many bytes of the output are
committed, and a restart cuts the file back to that length before polling again. On stdout, which cannot be cut
back, a crash between a write and its checkpoint repeats those lines on restart (same ``source`` and ``id``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.delivery import Batch
from borobridge.errors import SinkError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileCalls:
    """The system calls that write the output file: the seam where tests inject a failing disk."""

    write: Callable[[int, memoryview], int] = os.write
    fsync: Callable[[int], None] = os.fsync


class JsonLinesSink:
    """Writes structured CloudEvents one per line and commits the cursor after them."""

    def __init__(
        self, store: FileCheckpointStore, output: Path | None = None, *, calls: FileCalls = FileCalls()
    ) -> None:
        self._store = store
        self._path = output
        self._calls = calls
        self._handle: BinaryIO | None = None

    async def restore(self) -> dict[str, Checkpoint]:
        """Load the state file and cut the output file back to its committed length."""
        state = await asyncio.to_thread(self._store.load)
        if self._path is not None:
            self._handle = await asyncio.to_thread(_open_at, self._path, state.output_offset or 0)
        return dict(state.streams)

    async def deliver(self, batch: Batch) -> None:
        """Write the events, make them durable, then save the checkpoints with the new output length."""
        lines = b"".join(event.structured() + b"\n" for event in batch.events)
        for letter in batch.dead_letters:
            log.warning("dead letter from stream %s: %s", letter.stream, letter.record.reason)
            log.debug("dead letter record bytes: %r", letter.record.raw)
        try:
            await asyncio.to_thread(self._write_and_commit, lines, batch.checkpoints)
        except OSError as exc:
            raise SinkError(f"cannot write events to {self._path or 'stdout'}: {exc}") from exc

    def close(self) -> None:
        """Close the output file, if any."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _write_and_commit(self, lines: bytes, checkpoints: list[Checkpoint]) -> None:
        offset: int | None = None
        if self._handle is not None:
            _write_all(self._calls, self._handle.fileno(), lines)
            self._calls.fsync(self._handle.fileno())
            offset = self._handle.tell()
        elif lines:
            sys.stdout.buffer.write(lines)
            sys.stdout.buffer.flush()
        self._store.save(checkpoints, offset)


def _open_at(path: Path, committed: int) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab", buffering=0)
    if handle.tell() > committed:
        log.info("cutting %s back to its last committed %d bytes", path, committed)
        handle.truncate(committed)
    handle.seek(0, os.SEEK_END)
    return handle


def _write_all(calls: FileCalls, descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[calls.write(descriptor, view) :]
