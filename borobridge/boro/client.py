"""The Boro Control API client: batched TaskAlarms calls, discovery and signing.

It takes an injected ``httpx.AsyncClient``, so tests hand it an ``httpx.MockTransport`` or point it at the
simulator over real HTTP. Every failure becomes a :class:`~borobridge.errors.BoroError`; nothing here moves a
cursor, the caller does once it delivered what a page held.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import msgspec

from borobridge.backoff import Backoff
from borobridge.boro import hmac_auth
from borobridge.boro.models import (
    ENVELOPE_DECODER,
    PROJECTS_DECODER,
    RECORD_DECODER,
    REQUEST_ENCODER,
    TASK_ALARMS_DECODER,
    AlarmRecord,
    ReplyItem,
    error_text,
)
from borobridge.boro.queries import AlarmPage, AlarmQuery, DecodedRecord, RejectedRecord
from borobridge.errors import (
    BoroDecodeError,
    BoroError,
    BoroHTTPError,
    BoroReplyError,
    BoroTransportError,
)
from borobridge.retry import repeat_delay
from borobridge.secret import masked_url, scrubbed
from borobridge.settings import BoroSettings

log = logging.getLogger(__name__)

EXCERPT: Final = 200
MAX_ATTEMPTS: Final = 4
STATE_TYPES: Final = frozenset({"state", "event"})
TRIGGER_TIMES: Final = (1_000_000_000, 10_000_000_000)  # Unix seconds 2001-09-09 .. 2286-11-20: a millisecond
# value (13 digits) or a counter falls outside, and everything inside formats as an RFC 3339 time
TASK_SECONDS: Final = 1e10  # info.time and info.time_end count seconds since the task started: ±317 years at most
REFUSALS: Final = ("access denied", "permission denied")  # item errors no retry cures: the user lacks the rights
REFUSAL_FIX: Final = "boro.user_id, a Boro user allowed to read the projects polled"

PageResult = AlarmPage | BoroError


@dataclass(frozen=True)
class Signer:
    """Signs requests with APIAuth HMAC-SHA256."""

    access_id: str
    key: bytes = field(repr=False)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def headers(self, uri: str, body: bytes) -> dict[str, str]:
        """The authorisation headers for one POST."""
        return hmac_auth.signed_headers("POST", uri, body, self.access_id, self.key, self.clock())


class BoroClient:
    """Talks to one Boro server's Control API."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: BoroSettings,
        *,
        url: str | None = None,
        signer: Signer | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._settings = settings
        self._url = url or settings.url
        self._shown_url = masked_url(self._url)
        self._path = urlsplit(self._url).path or "/"
        self._signer = signer or _signer_from(settings)
        self._sleep = sleep

    async def task_alarms(self, queries: Sequence[AlarmQuery]) -> list[PageResult]:
        """Run every query, ``batch_size`` calls per HTTP request; one result or error per query, in order."""
        results: list[PageResult] = []
        size = self._settings.batch_size
        for start in range(0, len(queries), size):
            batch = queries[start : start + size]
            try:
                items = await self.call([("TaskAlarms", query.params()) for query in batch])
            except BoroError as error:
                results += [error] * len(batch)
                continue
            results += [self._page(query, item) for query, item in zip(batch, items, strict=True)]
        return results

    async def project_ids(self) -> list[int]:
        """Every project the user can see, through ProjectsList paging."""
        ids: list[int] = []
        page = 1
        while True:
            [item] = await self.call([("ProjectsList", {"type": "all", "limit_value": 100, "page": page})])
            try:
                result = PROJECTS_DECODER.decode(_result_of(item))
            except msgspec.DecodeError as exc:
                problem = f"result is not a ProjectsList result: {exc}"
                raise BoroReplyError(problem, method=item.method, item_id=item.id) from exc
            ids += [project.id for project in result.projects]
            if page >= result.total_pages or not result.projects:
                return ids
            page += 1

    async def call(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[ReplyItem]:
        """One request carrying ``calls``, retried with backoff; reply items matched back by id."""
        body = REQUEST_ENCODER.encode(
            {
                "user_id": self._settings.user_id,
                "methods": [{"method": m, "id": i, "params": p} for i, (m, p) in enumerate(calls, 1)],
            }
        )
        backoff = Backoff(self._settings.retry.initial_backoff, self._settings.retry.max_backoff)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return _match(calls, await self._post(body))
            except BoroError as error:
                delay = repeat_delay(error, backoff)
                if delay is None or attempt == MAX_ATTEMPTS:
                    raise
                log.warning("Boro request failed (%s); retry %d in %.1f s", error, attempt, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self._signer is not None:
            headers |= self._signer.headers(self._path, body)
        try:
            response = await self._http.post(
                self._url, content=body, headers=headers, timeout=self._settings.request_timeout
            )
        except httpx.TimeoutException as exc:
            raise BoroTransportError(
                f"no answer from {self._shown_url} within {self._settings.request_timeout} s"
            ) from exc
        except httpx.TransportError as exc:
            raise BoroTransportError(f"cannot reach {self._shown_url}: {scrubbed(repr(exc), self._url)}") from exc
        if response.status_code >= 400:
            raise BoroHTTPError(response.status_code, _excerpt(response.content), _retry_after(response))
        return response.content

    def _page(self, query: AlarmQuery, item: ReplyItem) -> PageResult:
        try:
            result = TASK_ALARMS_DECODER.decode(_result_of(item))
        except BoroError as error:
            return error
        except msgspec.DecodeError as exc:
            return BoroReplyError(f"result is not a TaskAlarms result: {exc}", method=item.method, item_id=item.id)
        records, rejected = _decode_records(query.project_id, result.alarms)
        if problem := _unasked_record(query, records):
            return BoroReplyError(problem, method=item.method, item_id=item.id)
        return AlarmPage(
            query=query,
            records=records,
            rejected=rejected,
            update_token=result.update_token,
            current_page=result.current_page,
            total_pages=result.total_pages,
            limit_value=result.limit_value,
        )


def _signer_from(settings: BoroSettings) -> Signer | None:
    if settings.hmac is None:
        return None
    access_id = settings.hmac.access_id or str(settings.user_id)
    return Signer(access_id, hmac_auth.decode_key(settings.hmac.key.reveal()))


def _match(calls: Sequence[tuple[str, dict[str, Any]]], body: bytes) -> list[ReplyItem]:
    """The reply items in call order, paired by the id each must carry back; any doubt refuses the whole reply."""
    try:
        envelope = ENVELOPE_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise BoroDecodeError(str(exc), _excerpt(body)) from exc
    ids = Counter(item.id for item in envelope.reply if item.id is not None)
    if without := len(envelope.reply) - ids.total():
        raise BoroReplyError(f"reply items without an id: {without} of {len(envelope.reply)}")
    unknown = sorted(key for key in ids if not 1 <= key <= len(calls))
    if unknown:
        raise BoroReplyError(f"reply ids {unknown} match no call of this request")
    repeated = sorted(key for key, count in ids.items() if count > 1)
    if repeated:
        raise BoroReplyError(f"reply ids {repeated} answer one call more than once")
    by_id = {item.id: item for item in envelope.reply}
    missing = [i for i in range(1, len(calls) + 1) if i not in by_id]
    if missing:
        raise BoroReplyError(f"no reply item for call ids {missing}", method=calls[missing[0] - 1][0])
    return [by_id[i] for i in range(1, len(calls) + 1)]


def _result_of(item: ReplyItem) -> msgspec.Raw:
    if item.error:
        text = error_text(item.error)
        fix = REFUSAL_FIX if any(refusal in text.lower() for refusal in REFUSALS) else None
        problem = f"Boro reports an error: {text}"
        raise BoroReplyError(problem, method=item.method, item_id=item.id, fix=fix)
    if not item.result:
        raise BoroReplyError("neither result nor error in the reply item", method=item.method, item_id=item.id)
    return item.result


def _decode_records(project_id: int, raws: list[msgspec.Raw]) -> tuple[list[DecodedRecord], list[RejectedRecord]]:
    records: list[DecodedRecord] = []
    rejected: list[RejectedRecord] = []
    for raw in raws:
        data = bytes(raw)
        try:
            record = RECORD_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            rejected.append(RejectedRecord(project_id, data, f"record does not decode: {exc}"))
            continue
        if problem := _semantic_problem(record):
            rejected.append(RejectedRecord(project_id, data, problem))
        else:
            records.append(DecodedRecord(record, data))
    return records, rejected


def _unasked_record(query: AlarmQuery, records: list[DecodedRecord]) -> str | None:
    """Why the page answers another question than ``query`` (a record of another project or task), or None."""
    chosen = set(query.task_ids) if isinstance(query.task_ids, list) else None
    for decoded in records:
        record = decoded.record
        if record.project_id != query.project_id:
            asked = query.project_id
            return f"record {record.id} belongs to project {record.project_id}, the call asked for project {asked}"
        if chosen is not None and record.task_id not in chosen:
            return f"record {record.id} is of task {record.task_id}, the call asked for tasks {sorted(chosen)}"
    return None


def _semantic_problem(record: AlarmRecord) -> str | None:
    if record.type not in STATE_TYPES:
        return f"type {record.type!r} is neither 'state' nor 'event'"
    if record.type == "state" and record.active is None:
        return "a state record without 'active'"
    return _time_problem(record)


def _time_problem(record: AlarmRecord) -> str | None:
    """A time no event time can be derived from, with the field and its value."""
    low, high = TRIGGER_TIMES
    if not low <= record.trigger_time <= high:
        return f"trigger_time {record.trigger_time} is not a plausible Unix time in seconds (expected {low}..{high})"
    info = record.info  # NaN and the infinities fail the comparisons below too
    if info.time is not None and not -TASK_SECONDS <= info.time <= TASK_SECONDS:
        return _task_seconds_problem("info.time", info.time)
    if info.time_end is not None and not -TASK_SECONDS <= info.time_end <= TASK_SECONDS:
        return _task_seconds_problem("info.time_end", info.time_end)
    return None


def _task_seconds_problem(name: str, value: float) -> str:
    return (
        f"{name} {value!r} is not a plausible number of seconds since the task started "
        f"(expected a finite number within ±{TASK_SECONDS:.0e})"
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return _retry_after_date(value)


def _retry_after_date(value: str) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _excerpt(body: bytes) -> str:
    return body[:EXCERPT].decode("utf-8", "replace")
