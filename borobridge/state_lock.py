"""An exclusive lock on the local state file, so that one process at a time writes its cursor and output.

The lock is ``flock`` on ``<state>.lock`` beside the state file (the state file itself is replaced on every save,
so a lock on it would not outlive the first one). The holder writes its pid and host into the lock file, and a
process refused names them. The kernel drops the lock when its holder exits, however it exits; the file stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Final

import msgspec

from borobridge.errors import CheckpointError

HOLDER_BYTES: Final = 4096


class LockHolder(msgspec.Struct, kw_only=True, frozen=True):
    """Who holds the lock, as written into the lock file."""

    pid: int
    host: str

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}"


_HOLDER_DECODER: Final = msgspec.json.Decoder(LockHolder)


class StateLock:
    """The exclusive lock of one state file, taken once and held until :meth:`release`."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.path = state_path.with_name(state_path.name + ".lock")
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._descriptor is not None

    def acquire(self) -> None:
        """Take the lock, or raise a :class:`CheckpointError` naming its holder; does nothing when held already."""
        if self._descriptor is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CheckpointError(f"cannot lock the state file {self.state_path}: {exc}") from exc
        try:
            self._take(descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    def _take(self, descriptor: int) -> None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"the state file {self.state_path} is in use by {_holder(descriptor)} (lock {self.path}); "
                "stop that instance, or give this one its own state.path"
            ) from None
        except OSError as exc:
            raise CheckpointError(f"cannot lock the state file {self.state_path}: {exc}") from exc
        try:
            _write_holder(descriptor, LockHolder(pid=os.getpid(), host=socket.gethostname()))
        except OSError as exc:
            raise CheckpointError(f"cannot lock the state file {self.state_path}: {exc}") from exc

    def release(self) -> None:
        """Clear the holder and drop the lock; does nothing when not held."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            with contextlib.suppress(OSError):  # a stale name misleads nobody once the lock is free
                os.ftruncate(descriptor, 0)
            os.close(descriptor)


def _holder(descriptor: int) -> str:
    try:
        return str(_HOLDER_DECODER.decode(os.pread(descriptor, HOLDER_BYTES, 0)))
    except (OSError, msgspec.DecodeError):
        return "another process"  # it has the lock but has not written its name yet


def _write_holder(descriptor: int, holder: LockHolder) -> None:
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, msgspec.json.encode(holder) + b"\n", 0)
