"""Reading a past period from Boro in ``updated_at`` windows that each fit on one page.

Paging a long period is unsafe: a state cleared while the pages are read moves to the end (its ``updated_at``
changes) and shifts every later record back by one, so a record can slip between two pages. A window that fits
on one page is read in one request and cannot shift. So the bridge asks for the whole period and halves any
window whose page comes back full, down to one second; only a single second with more than a page of records is
paged. Windows overlap by their boundary second, because whether ``period_to`` is inclusive is not documented;
the transition memory drops the repeats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from borobridge.boro.client import BoroClient
from borobridge.boro.queries import AlarmPage, AlarmQuery
from borobridge.errors import BoroError


@dataclass(frozen=True, slots=True)
class BackfillStep:
    """One page of a backfill, and where to start again once it is delivered (None: the backfill is done)."""

    page: AlarmPage
    resume_from: int | None


async def backfill(
    client: BoroClient, base: AlarmQuery, start: int, now: int, end: int | None = None
) -> AsyncIterator[BackfillStep]:
    """Every record whose ``updated_at`` is at or after ``start`` (and up to ``end``), oldest windows first."""
    windows: list[tuple[int, int | None]] = [(max(1, start), end)]
    while windows:
        low, high = windows.pop()
        page = await _one(client, replace(base, period_from=low, period_to=high, page=1, update_token=None))
        if not page.full:
            yield BackfillStep(page, high)
        elif (high if high is not None else now) - low > 1:
            middle = (low + high) // 2 if high is not None else max(now, low + 1)
            windows += [(middle, high), (low, middle)]
        else:
            async for step in _paged(client, page.query, high):
                yield step


async def _paged(client: BoroClient, query: AlarmQuery, high: int | None) -> AsyncIterator[BackfillStep]:
    async for page in client.pages(query):
        last = page.current_page >= page.total_pages or not page.full
        yield BackfillStep(page, high if last else query.period_from)


async def _one(client: BoroClient, query: AlarmQuery) -> AlarmPage:
    [result] = await client.task_alarms([query])
    if isinstance(result, BoroError):
        raise result
    return result
