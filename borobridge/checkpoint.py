"""Cursor records, and the local-file store of the embedded default.

A :class:`Checkpoint` evolves by msgspec's schema-evolution rules: new fields get defaults, types never change,
``version`` says which layout wrote it. The Kafka store keeps the same records in a compacted topic.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

import msgspec

from borobridge.errors import CheckpointError
from borobridge.reading import Position, Window
from borobridge.transitions import Finished

CHECKPOINT_VERSION: Final = 2


class Checkpoint(msgspec.Struct, kw_only=True, frozen=True):
    """Where one stream stands: its read position, its transition memory and the tasks it has seen.

    Version 1 kept only ``update_token``, ``backfill_from`` and ``done`` (finished ids without times); a version 1
    record is still read (:meth:`resumed_position`, and its ``done`` ids are kept until Boro's time dates them).
    """

    version: int = CHECKPOINT_VERSION
    stream: str
    update_token: int | float | None = None
    backfill_from: int | None = None
    active: list[int] = []
    done: list[int] = []
    committed_at: float = 0.0
    position: Position | None = None
    finished: list[Finished] = []
    tasks: list[int] = []

    def resumed_position(self) -> Position:
        """The read position this record describes, whichever version wrote it."""
        if self.position is not None:
            return self.position
        windows = (Window(self.backfill_from),) if self.backfill_from is not None else ()
        return Position(token=self.update_token, windows=windows)


class LocalState(msgspec.Struct, kw_only=True):
    """The state file: every stream's checkpoint and how much of the output file is committed."""

    version: int = CHECKPOINT_VERSION
    output_offset: int | None = None
    streams: dict[str, Checkpoint] = {}


_DECODER: Final = msgspec.json.Decoder(LocalState)
_ENCODER: Final = msgspec.json.Encoder()


class FileCheckpointStore:
    """Keeps :class:`LocalState` in one JSON file, replaced atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = LocalState()

    @property
    def state(self) -> LocalState:
        """The state last loaded or saved."""
        return self._state

    def load(self) -> LocalState:
        """Read the file; a missing file is a first start."""
        try:
            self._state = _DECODER.decode(self.path.read_bytes())
        except FileNotFoundError:
            self._state = LocalState()
        except (OSError, msgspec.DecodeError) as exc:
            raise CheckpointError(
                f"cannot read the state file {self.path}: {exc}; move it away to start afresh"
            ) from exc
        return self._state

    def save(self, checkpoints: list[Checkpoint], output_offset: int | None = None) -> None:
        """Merge these checkpoints into the state and write it durably."""
        streams = dict(self._state.streams)
        now = time.time()
        for checkpoint in checkpoints:
            streams[checkpoint.stream] = msgspec.structs.replace(checkpoint, committed_at=now)
        state = LocalState(output_offset=output_offset, streams=streams)
        self._write(_ENCODER.encode(state))
        self._state = state

    def _write(self, payload: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(self.path)
            _fsync_directory(self.path.parent)
        except OSError as exc:
            raise CheckpointError(f"cannot write the state file {self.path}: {exc}") from exc


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
