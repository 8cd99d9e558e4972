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

from borobridge.boro.models import Token
from borobridge.errors import CheckpointError
from borobridge.reading import Position, Window
from borobridge.state_lock import StateLock
from borobridge.transitions import Finished

CHECKPOINT_VERSION: Final = 2


class Checkpoint(msgspec.Struct, kw_only=True, frozen=True):
    """Where one stream stands: its read position, its transition memory and the tasks it has seen.

    Version 1 kept only ``update_token``, ``backfill_from`` and ``done`` (finished ids without times); a version 1
    record is still read (:meth:`resumed_position`, and its ``done`` ids are kept until Boro's time dates them).
    ``dead_letters`` holds the digests of the records already dead-lettered, by bucket like ``finished``.
    ``backfill`` is the first start's history read still to do (None: none, or done); it never moves ``position``.
    ``directions`` is the evidence of the order Boro lists each kind of reply in (``token``, ``period``), so that a
    restart does not fall back on ``boro.reply_order`` (:func:`borobridge.reading.direction`).
    """

    version: int = CHECKPOINT_VERSION
    stream: str
    update_token: Token | None = None
    backfill_from: int | None = None
    active: list[int] = []
    done: list[int] = []
    committed_at: float = 0.0
    position: Position | None = None
    finished: list[Finished] = []
    tasks: list[int] = []
    dead_letters: list[Finished] = []
    backfill: Position | None = None
    directions: dict[str, int] = {}

    def resumed_position(self) -> Position:
        """The read position this record describes, whichever version wrote it."""
        if self.position is not None:
            return self.position
        windows = (Window(self.backfill_from),) if self.backfill_from is not None else ()
        return Position(token=self.update_token, windows=windows)


class OutputIdentity(msgspec.Struct, kw_only=True, frozen=True):
    """Which file ``output_offset`` counts: its inode, and a digest of the last committed bytes."""

    inode: int
    tail_digest: str


class LocalState(msgspec.Struct, kw_only=True):
    """The state file: every stream's checkpoint and how much of which output file is committed.

    ``output_offset`` is kept next to ``output_file`` so that a state file stays readable by releases that knew
    only the offset.
    """

    version: int = CHECKPOINT_VERSION
    output_offset: int | None = None
    output_file: OutputIdentity | None = None
    streams: dict[str, Checkpoint] = {}


_DECODER: Final = msgspec.json.Decoder(LocalState)
_ENCODER: Final = msgspec.json.Encoder()


class FileCheckpointStore:
    """Keeps :class:`LocalState` in one JSON file, replaced atomically (write, fsync, rename).

    The first :meth:`load` (or :meth:`save`) takes the state file's exclusive lock, held until :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = LocalState()
        self._lock = StateLock(path)

    @property
    def state(self) -> LocalState:
        """The state last loaded or saved."""
        return self._state

    def load(self) -> LocalState:
        """Lock the file and read it; a missing file is a first start. A failed first read releases the lock."""
        first = not self._lock.held
        self._lock.acquire()
        try:
            self._state = self._read()
        except BaseException:
            if first:
                self._lock.release()
            raise
        return self._state

    def save(
        self,
        checkpoints: list[Checkpoint],
        output_offset: int | None = None,
        output_file: OutputIdentity | None = None,
    ) -> None:
        """Merge these checkpoints into the state and write it durably, with the output file's committed length."""
        self._lock.acquire()
        streams = dict(self._state.streams)
        now = time.time()
        for checkpoint in checkpoints:
            streams[checkpoint.stream] = msgspec.structs.replace(checkpoint, committed_at=now)
        state = LocalState(output_offset=output_offset, output_file=output_file, streams=streams)
        self._write(_ENCODER.encode(state))
        self._state = state

    def close(self) -> None:
        """Release the state file's lock; a later load or save takes it again."""
        self._lock.release()

    def _read(self) -> LocalState:
        try:
            return _DECODER.decode(self.path.read_bytes())
        except FileNotFoundError:
            return LocalState()
        except (OSError, msgspec.DecodeError) as exc:
            raise CheckpointError(
                f"cannot read the state file {self.path}: {exc}; move it away to start afresh"
            ) from exc

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
