"""The record store: current records plus the ordered log of their changes."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Literal

import msgspec

from borobridge.simulator.world import JSON


class Change(msgspec.Struct, frozen=True):
    """One change of one record: its creation, or the clearing of a state. ``seq`` counts from 1."""

    seq: int
    record_id: int
    project_id: int
    task_id: int
    type: str
    active: bool | None
    updated_at: int
    transition: Literal["created", "cleared"]


class StoredRecord(msgspec.Struct, frozen=True):
    """The current state of one record: ``alarm`` is exactly what a reply carries for it."""

    seq: int
    updated_at: int
    alarm: JSON

    @property
    def id(self) -> int:
        return int(self.alarm["id"])

    @property
    def project_id(self) -> int:
        return int(self.alarm["project_id"])

    @property
    def task_id(self) -> int:
        return int(self.alarm["task_id"])

    @property
    def active(self) -> bool | None:
        active: bool | None = self.alarm.get("active")
        return active


class Alarm(msgspec.Struct, kw_only=True):
    """A record as the API sends it; field order follows the documented example."""

    id: int
    project_id: int
    app_id: int
    task_id: int
    profile_id: int
    trigger_time: int
    active: bool | msgspec.UnsetType = msgspec.UNSET
    kind: str = "alarm"
    level: str
    trigger_group: str
    type: str
    name: str
    info: JSON


class Entry(msgspec.Struct):
    alarm: Alarm
    updated_at: int
    seq: int = 0


class AlarmStore:
    """Records by id and the log of their changes, kept in ``updated_at`` order."""

    def __init__(self, on_change: Callable[[Change], None] | None = None) -> None:
        self._on_change = on_change
        self._entries: dict[int, Entry] = {}
        self._by_project: dict[int, dict[int, Entry]] = {}  # the same records per project: a listing reads its own
        self._log: list[Change] = []
        self._log_seconds: list[int] = []
        self._forgotten = 0  # changes dropped from the head of the log
        self._project_seqs: dict[int, list[int]] = {}  # each project's changes, by seq: a query scans its own

    @property
    def seq(self) -> int:
        return self._forgotten + len(self._log)

    def get(self, record_id: int) -> Entry:
        return self._entries[record_id]

    def entries(self, project_id: int | None = None) -> Iterable[Entry]:
        if project_id is None:
            return self._entries.values()
        return self._by_project.get(project_id, {}).values()

    def changes(self, after_seq: int = 0) -> list[Change]:
        return self._log[max(after_seq - self._forgotten, 0) :]

    def add(self, alarm: Alarm, updated_at: int) -> None:
        entry = Entry(alarm, updated_at)
        self._entries[alarm.id] = entry
        self._by_project.setdefault(alarm.project_id, {})[alarm.id] = entry
        self._record(entry, "created")

    def touch(self, entry: Entry, updated_at: int) -> None:
        entry.updated_at = updated_at
        self._record(entry, "cleared")

    def index_of_second(self, second: int) -> int:
        """Position in the log of the first change with ``updated_at >= second``."""
        return self._forgotten + bisect.bisect_left(self._log_seconds, second)

    def changed_from(self, index: int, project_id: int) -> list[Entry]:
        """One project's records whose latest change sits at or after log position ``index``, in change order."""
        seqs = self._project_seqs.get(project_id, [])
        found = []
        for seq in seqs[bisect.bisect_left(seqs, index + 1) :]:  # the change at position p has seq p + 1
            change = self._log[seq - 1 - self._forgotten]
            entry = self._entries[change.record_id]
            if entry.seq == change.seq:
                found.append(entry)
        return found

    def unchanged_before(self, index: int, wanted: Callable[[Entry], bool], count: int) -> list[Entry]:
        """Up to ``count`` records last changed just before log position ``index`` (oldest first)."""
        found: list[Entry] = []
        local = index - self._forgotten
        for change in reversed(self._log[max(local - 500, 0) : max(local, 0)]):
            entry = self._entries[change.record_id]
            if entry.seq == change.seq and wanted(entry):
                found.append(entry)
            if len(found) == count:
                break
        return found[::-1]

    def forget_before(self, second: int) -> None:
        """Drop the changes older than ``second`` and the records they left behind (active states stay)."""
        cut = bisect.bisect_left(self._log_seconds, second)
        for change in self._log[:cut]:
            entry = self._entries.get(change.record_id)
            if entry is not None and entry.seq == change.seq and entry.alarm.active is not True:
                del self._entries[change.record_id], self._by_project[change.project_id][change.record_id]
        del self._log[:cut], self._log_seconds[:cut]
        self._forgotten += cut
        for seqs in self._project_seqs.values():
            del seqs[: bisect.bisect_right(seqs, self._forgotten)]

    def _record(self, entry: Entry, transition: Literal["created", "cleared"]) -> None:
        entry.seq = self.seq + 1
        alarm = entry.alarm
        active = None if isinstance(alarm.active, msgspec.UnsetType) else alarm.active
        change = Change(
            entry.seq, alarm.id, alarm.project_id, alarm.task_id, alarm.type, active, entry.updated_at, transition
        )
        self._log.append(change)
        self._log_seconds.append(entry.updated_at)
        self._project_seqs.setdefault(alarm.project_id, []).append(change.seq)
        if self._on_change is not None:
            self._on_change(change)


def by_time_then_id(entry: Entry) -> tuple[int, int]:
    return entry.updated_at, entry.alarm.id
