"""The JSON-lines output file: rounds appended after the committed bytes, cut back only where the state says.

The state file records the committed length together with the file's identity (inode, and a digest of the last
committed bytes). At start the file is cut back to that length only when it is the file described; any other file
(no state, a state of another file, a file rewritten in place) is kept whole and appended to. Before each round is
written, whatever a failed round left after the committed length is cut away, so a retried round is written once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from borobridge.checkpoint import OutputIdentity
from borobridge.errors import CheckpointError

log = logging.getLogger(__name__)

TAIL_BYTES: Final = 256  # the committed bytes the identity's digest covers: the end of the last event or more


@dataclass(frozen=True, slots=True)
class FileCalls:
    """The system calls that write the output file: the seam where tests put a failing disk."""

    write: Callable[[int, memoryview], int] = os.write
    fsync: Callable[[int], None] = os.fsync


SYSTEM_CALLS: Final = FileCalls()


@dataclass(frozen=True, slots=True)
class Committed:
    """A length of the file that is (or is about to be) committed, and the bytes just before it."""

    length: int
    tail: bytes


class OutputFile:
    """One open output file and its committed length; rounds are appended, made durable, then committed."""

    def __init__(self, path: Path, descriptor: int, committed: Committed, calls: FileCalls) -> None:
        self.path = path
        self._descriptor = descriptor
        self._inode = os.fstat(descriptor).st_ino
        self._committed = committed
        self._pending: Committed | None = None
        self._clean = True  # nothing after the committed length
        self._calls = calls

    @classmethod
    def open(cls, path: Path, offset: int | None, identity: OutputIdentity | None, calls: FileCalls) -> OutputFile:
        """Open (or create) the file, cutting it back to ``offset`` only if ``identity`` describes it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            length = _committed_length(path, descriptor, offset, identity)
            committed = Committed(length, _read_tail(descriptor, length))
            return cls(path, descriptor, committed, calls)
        except BaseException:
            os.close(descriptor)
            raise

    def append(self, lines: bytes) -> tuple[int, OutputIdentity]:
        """Write a round after the committed bytes and make it durable; returns the length and identity to save."""
        committed = self._committed
        self._pending = None
        if not self._clean:
            os.ftruncate(self._descriptor, committed.length)  # drop what a failed round left behind
        self._clean = False
        view = memoryview(lines)
        while view:
            view = view[self._calls.write(self._descriptor, view) :]
        self._calls.fsync(self._descriptor)
        tail = lines[-TAIL_BYTES:] if len(lines) >= TAIL_BYTES else (committed.tail + lines)[-TAIL_BYTES:]
        self._pending = Committed(committed.length + len(lines), tail)
        return self._pending.length, OutputIdentity(inode=self._inode, tail_digest=_digest(self._pending.tail))

    def commit(self) -> None:
        """The state file now records the round last appended."""
        if self._pending is None:
            raise RuntimeError("commit() without a round appended since the last commit")
        self._committed, self._pending = self._pending, None
        self._clean = True

    def close(self) -> None:
        """Close the file; what was appended but not committed is cut back at the next start."""
        os.close(self._descriptor)


def _committed_length(path: Path, descriptor: int, offset: int | None, identity: OutputIdentity | None) -> int:
    status = os.fstat(descriptor)
    if offset is None or identity is None or identity.inode != status.st_ino:
        return _appending_after(path, status.st_size)
    if status.st_size < offset:
        raise CheckpointError(
            f"the output file {path} holds {status.st_size} bytes, fewer than the {offset} bytes the state file "
            "records as committed: it was cut short outside borobridge; move it away to start a new output file"
        )
    if _digest(_read_tail(descriptor, offset)) != identity.tail_digest:
        return _appending_after(path, status.st_size)
    if status.st_size > offset:
        log.info("cutting %s back to its last committed %d bytes", path, offset)
        os.ftruncate(descriptor, offset)
    return offset


def _appending_after(path: Path, size: int) -> int:
    if size:
        log.info("%s holds %d bytes the state file does not describe: appending after them, nothing cut", path, size)
    return size


def _read_tail(descriptor: int, length: int) -> bytes:
    start = max(0, length - TAIL_BYTES)
    return os.pread(descriptor, length - start, start)


def _digest(tail: bytes) -> str:
    return hashlib.blake2b(tail, digest_size=8).hexdigest()
