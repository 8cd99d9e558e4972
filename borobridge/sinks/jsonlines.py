"""The embedded default's sink: CloudEvents as JSON lines on stdout or in a file, cursor in a local file.

With a file, delivery is exactly-once across crashes and retries: the state file records how many bytes of which
output file are committed, a restart cuts that file back to that length before polling again, and a retried round
first cuts away what the failed one left (see :mod:`borobridge.sinks.output_file`). On stdout, which cannot be cut
back, a crash between a write and its checkpoint repeats those lines on restart (same ``source`` and ``id``).
The state file is locked for as long as the sink is open, so a second process on it is refused at start.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from borobridge.checkpoint import Checkpoint, FileCheckpointStore
from borobridge.errors import SinkError
from borobridge.sinks import Batch
from borobridge.sinks.output_file import SYSTEM_CALLS, FileCalls, OutputFile

log = logging.getLogger(__name__)


class JsonLinesSink:
    """Writes structured CloudEvents one per line and commits the cursor after them."""

    def __init__(
        self, store: FileCheckpointStore, output: Path | None = None, *, calls: FileCalls = SYSTEM_CALLS
    ) -> None:
        self._store = store
        self._path = output
        self._calls = calls
        self._output: OutputFile | None = None

    async def restore(self) -> dict[str, Checkpoint]:
        """Lock and load the state file, and cut the output file back to its committed length if it describes it."""
        await asyncio.to_thread(self._open)
        return dict(self._store.state.streams)

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
        """Close the output file, if any, and release the state file."""
        if self._output is not None:
            self._output.close()
            self._output = None
        self._store.close()

    def _open(self) -> None:
        state = self._store.load()
        if self._path is not None and self._output is None:
            try:
                self._output = OutputFile.open(self._path, state.output_offset, state.output_file, self._calls)
            except BaseException:
                self._store.close()
                raise

    def _write_and_commit(self, lines: bytes, checkpoints: list[Checkpoint]) -> None:
        if self._output is None:
            if lines:
                sys.stdout.buffer.write(lines)
                sys.stdout.buffer.flush()
            self._store.save(checkpoints)
            return
        length, identity = self._output.append(lines)
        self._store.save(checkpoints, length, identity)
        self._output.commit()
