"""A stream: one (Boro server, project, task selector, filter), its cursor and its transition memory."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field, replace

import msgspec

from borobridge.boro.queries import AlarmQuery
from borobridge.checkpoint import Checkpoint
from borobridge.settings import BoroSettings, FilterSettings
from borobridge.transitions import TransitionMemory


@dataclass(eq=False)
class Stream:
    """The poll state of one stream; ``query`` always carries the committed cursor.

    Each checkpoint built is committed (:meth:`advance`) or given up (:meth:`rollback`) in the order it was built;
    a round may be fed and checkpointed while the one before it is still being delivered.
    """

    id: str
    query: AlarmQuery
    memory: TransitionMemory
    backfill_from: int | None = None
    catch_up_from: int | None = None
    _marks: deque[int] = field(default_factory=deque, init=False, repr=False)  # of checkpoints not committed yet

    @property
    def token(self) -> int | float | None:
        """The committed update_token, or None before the first start."""
        return self.query.update_token

    @property
    def polling(self) -> bool:
        """True once first start and any backfill are done."""
        return self.token is not None and self.backfill_from is None and self.catch_up_from is None

    def checkpoint(self, token: int | float | None, backfill_from: int | None = None) -> Checkpoint:
        """The record that commits this stream at ``token``, with its memory as fed so far."""
        self._marks.append(self.memory.mark())
        return Checkpoint(
            stream=self.id,
            update_token=token,
            backfill_from=backfill_from,
            active=self.memory.active,
            done=self.memory.done,
        )

    def advance(self, checkpoint: Checkpoint) -> None:
        """Adopt the oldest checkpoint not yet committed, once it is: the memory as it was fed up to it."""
        self.memory.commit(self._marks.popleft())
        self.query = replace(self.query, update_token=checkpoint.update_token)
        self.backfill_from = checkpoint.backfill_from
        self.catch_up_from = None

    def rollback(self) -> None:
        """Give up every checkpoint not committed yet, and what was fed for them."""
        self.memory.rollback()
        self._marks.clear()


def stream_id(server: str, project_id: int, settings: BoroSettings) -> str:
    """``server/project``, plus a digest of the task selector and filter when they are not the defaults."""
    base = f"{server}/{project_id}"
    if settings.task_ids == "*" and settings.filter == FilterSettings():
        return base
    selection = msgspec.json.encode({"task_ids": settings.task_ids, "filter": settings.filter})
    return f"{base}/{hashlib.sha256(selection).hexdigest()[:12]}"


def open_stream(server: str, project_id: int, settings: BoroSettings, saved: Checkpoint | None) -> Stream:
    """A stream for one project, resumed from its checkpoint when there is one."""
    query = AlarmQuery(
        project_id=project_id,
        task_ids=settings.task_ids,
        filter=settings.filter,
        limit=settings.page_size,
        update_token=saved.update_token if saved else None,
    )
    memory = TransitionMemory(saved.active, saved.done) if saved else TransitionMemory()
    backfill_from = saved.backfill_from if saved else None
    return Stream(stream_id(server, project_id, settings), query, memory, backfill_from)
