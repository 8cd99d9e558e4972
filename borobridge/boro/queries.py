"""What the bridge asks TaskAlarms for, and the pages it gets back (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from borobridge.boro.models import AlarmRecord, Token
from borobridge.settings import FilterSettings

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, kw_only=True)
class AlarmQuery:
    """One TaskAlarms call: a project, a task selector, a filter, and a cursor or a page."""

    project_id: int
    task_ids: list[int] | str = "*"
    filter: FilterSettings = field(default_factory=FilterSettings)
    limit: int = MAX_PAGE_SIZE
    update_token: Token | None = None
    page: int = 1
    period_from: int | None = None
    period_to: int | None = None
    active_states_only: bool = False

    def params(self) -> dict[str, Any]:
        """The ``params`` object of the call, with only what differs from Boro's defaults."""
        params: dict[str, Any] = {"project_id": self.project_id, "task_ids": self.task_ids, "kind": "alarm"}
        params["limit_value"] = self.limit
        if self.update_token is not None:
            params["update_token"] = self.update_token
        elif self.page != 1:
            params["page"] = self.page
        if self.active_states_only:
            params["active_states_only"] = True
        if filter_ := self._filter():
            params["filter"] = filter_
        return params

    def _filter(self) -> dict[str, Any]:
        filter_: dict[str, Any] = msgspec.to_builtins(self.filter)
        filter_ = {key: value for key, value in filter_.items() if value}
        if self.period_from is not None:
            filter_["period_from"] = self.period_from
        if self.period_to is not None:
            filter_["period_to"] = self.period_to
        return filter_

    def after(self, token: Token) -> AlarmQuery:
        """The same query continued from a new token."""
        return replace(self, update_token=token, page=1)


class DecodedRecord(msgspec.Struct, frozen=True, gc=False):
    """A record that decoded, with the exact bytes Boro sent for it (a Struct: one is built per record)."""

    record: AlarmRecord
    raw: bytes


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that cannot become an event: its bytes and why (for the dead-letter topic)."""

    project_id: int
    raw: bytes
    reason: str


@dataclass(frozen=True, kw_only=True)
class AlarmPage:
    """One TaskAlarms result, records in the order Boro produced them."""

    query: AlarmQuery
    records: list[DecodedRecord]
    rejected: list[RejectedRecord]
    update_token: Token
    current_page: int
    total_pages: int
    limit_value: int

    @property
    def size(self) -> int:
        """Records on the page, decodable or not."""
        return len(self.records) + len(self.rejected)

    @property
    def full(self) -> bool:
        """More may be waiting than this page holds, by the reply's own ``limit_value`` and ``total_pages``."""
        return self.size > 0 and (self.size >= self.limit_value or self.current_page < self.total_pages)
