"""A seeded, deterministic stand-in for the Boro Control API: pure logic, no sockets.

The simulator owns a small world (projects, probes, tasks) whose tasks raise alarm records over time, and answers
``POST /ctrl_api/v1/json`` the way ``boro-api.md`` describes it. Tests treat it as ground truth: ``changes()``
lists every record change ever made, ``records()`` the current state of every record.

Fixed choices where the Boro documentation is silent:

- ``updated_at`` is kept in whole Unix seconds, like ``trigger_time``; it is never sent, the API does not return it.
- ``limit_value`` above 100 is clamped to 100 (the reply says 100); below 1 is an error item.
- ``period_from`` and ``period_to`` are both inclusive. An empty ``trigger_groups`` / ``trigger_names`` list means
  "no filter". Task ids that are not in the project select nothing. ``total_pages`` is 0 for an empty answer.
- Events carry no ``active`` key; states do. A per-task state trigger is never active twice at once.
- ``user_id`` other than the simulator's gets an error item for every call; bad envelopes get HTTP 400.

Personalities (``Personality``): the readings the documentation leaves open, each selectable, all combinable.
The default is the first choice of each.

- ``token``, what ``update_token`` is. A token request returns the first page only (``page`` is ignored).
  ``"sequence"``: the number of the last change seen; a request returns the records changed after it, in change
  order; the new token is the highest sequence number on a full page, else the current one. Nothing is ever
  returned twice. ``"timestamp"``: a Unix second; a request returns the records with ``updated_at >= token``; the
  new token is the newest ``updated_at`` on a full page, else the server's current second. Records sharing the
  boundary second come back again, and a full page that all shares one second returns the same token (page with
  ``filter.period_from`` to get past it). ``"record_time"``: the new token is the ``updated_at`` of the last record
  listed on the page, full or not (listings without a token too); an empty page returns the token that was asked
  with (without one: the server's current second). ``"reply_time"``: the new token is always the server's clock
  second at the reply, so the records that did not fit on a full page are never offered to that token again.
- ``token_compare``, for the three time tokens: ``"inclusive"`` (``updated_at >= token``) or ``"exclusive"``
  (``updated_at > token``: with ``reply_time``, a record written later in the token's own second is lost to it).
- ``token_order`` and ``period_order``: ``"oldest_first"`` or ``"newest_first"``, for token replies and for
  listings without a token. The order picks the records as well as listing them: newest first, the page holds the
  newest ``limit_value`` matches (the older ones are left for page 2, or lost to the token). Ties in ``updated_at``
  go by ``id`` (sequence tokens: by change), reversed for newest first.
- ``clock_offset`` (seconds, ±3600): the server's clock is the host clock plus this. Every record time
  (``trigger_time``, ``updated_at``), token, period and task start is on the server's clock; ``advance(now)`` and
  the other ``now`` arguments are host times. HMAC signatures are checked against the host clock.
- ``probe_stops`` (probability per ``advance``) stops one running probe for ``stop_seconds``; it starts again by
  itself at the first ``advance`` past that time. Meanwhile ``task_ids: "*"`` (and ``AppList``, ``AppTasks``,
  ``TaskInfo``) see it stopped, but its records still change: its states clear on schedule and events keep firing
  on its tasks at the normal rate (no new states). Explicit task ids still reach them; ground truth has them all.
- ``moving_records`` (probability per TaskAlarms listing without a token): one still-active state of the project
  with ``updated_at`` in the requested period clears right before the answer is computed, so its ``updated_at``
  moves to now and the records behind it move up a page.

Probe stops and moving records draw from the world's generator (only when switched on, so the default world is
the one it always was). Faults (``Faults``) are drawn from a generator seeded by the seed, separate from the
world's, so the same seed gives the same world whatever faults are switched on; a faulted reply never changes what
later replies return.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypeGuard

import msgspec

from borobridge.boro import hmac_auth

ENDPOINT_PATH = "/ctrl_api/v1/json"
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
LEVELS = ("ok", "warning", "error", "major", "fatal")
TRIGGER_GROUPS = ("eth", "etr", "qoe", "ott", "sys", "scte35")
MAX_CATCH_UP_SECONDS = 300.0
BURST_SIZE = (101, 250)

TokenKind = Literal["sequence", "timestamp", "record_time", "reply_time"]
TokenMode = TokenKind  # the older name of the same choice
TokenCompare = Literal["inclusive", "exclusive"]
ReplyOrder = Literal["oldest_first", "newest_first"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("sequence", "timestamp", "record_time", "reply_time")
TOKEN_COMPARES: tuple[TokenCompare, ...] = ("inclusive", "exclusive")
REPLY_ORDERS: tuple[ReplyOrder, ...] = ("oldest_first", "newest_first")
MAX_CLOCK_OFFSET = 3600.0
JSON = dict[str, Any]

_JSON_HEADERS = {"content-type": "application/json"}
_NGINX_503 = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_ERROR_ITEMS: tuple[str | JSON, ...] = (
    "Internal server error",
    "database is temporarily unavailable",
    {"code": 500, "message": "internal error while reading alarms"},
)


class Faults(msgspec.Struct, frozen=True, kw_only=True):
    """Probabilities (0..1) of misbehaviour, drawn per request (per TaskAlarms item for ``error_item`` and
    ``repeat``, per ``advance`` for ``burst``).

    ``retry_after`` (seconds, fractions allowed so tests stay fast) goes in the 429 ``Retry-After`` header;
    ``slow_seconds`` is the delay a slow reply asks the HTTP layer to wait before answering.
    """

    http_5xx: float = 0.0
    http_429: float = 0.0
    retry_after: float = 1.0
    slow: float = 0.0
    slow_seconds: float = 2.0
    malformed: float = 0.0
    error_item: float = 0.0
    repeat: float = 0.0
    burst: float = 0.0

    def __post_init__(self) -> None:
        for name in ("http_5xx", "http_429", "slow", "malformed", "error_item", "repeat", "burst"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be a probability between 0 and 1, got {rate}")
        if self.retry_after < 0 or self.slow_seconds < 0:
            raise ValueError("Faults.retry_after and Faults.slow_seconds must not be negative")


class Personality(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of what the Boro documentation leaves open; the module docstring explains each field.

    The default is the simulator as it always was: sequence tokens, oldest first, the host's clock, probes that
    stop only when told to, records that hold still while a period is paged.
    """

    token: TokenKind = "sequence"  # noqa: S105 - a cursor style, not a credential
    token_compare: TokenCompare = "inclusive"  # noqa: S105 - a comparison, not a credential
    token_order: ReplyOrder = "oldest_first"  # noqa: S105 - an order, not a credential
    period_order: ReplyOrder = "oldest_first"
    clock_offset: float = 0.0
    probe_stops: float = 0.0
    stop_seconds: float = 30.0
    moving_records: float = 0.0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("token", TOKEN_KINDS),
            ("token_compare", TOKEN_COMPARES),
            ("token_order", REPLY_ORDERS),
            ("period_order", REPLY_ORDERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Personality.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not -MAX_CLOCK_OFFSET <= self.clock_offset <= MAX_CLOCK_OFFSET:
            raise ValueError(
                f"Personality.clock_offset must be within ±{MAX_CLOCK_OFFSET:g} s, got {self.clock_offset}"
            )
        for name in ("probe_stops", "moving_records"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Personality.{name} must be a probability between 0 and 1, got {getattr(self, name)}")
        if self.stop_seconds <= 0:
            raise ValueError(f"Personality.stop_seconds must be greater than 0, got {self.stop_seconds}")

    @property
    def time_token(self) -> bool:
        """Whether the token is a Unix second (every kind but ``sequence``)."""
        return self.token != "sequence"  # noqa: S105 - a cursor style, not a credential

    @property
    def exclusive_tokens(self) -> bool:
        return self.token_compare == "exclusive"  # noqa: S105 - a comparison, not a credential

    @property
    def tokens_newest_first(self) -> bool:
        return self.token_order == "newest_first"  # noqa: S105 - an order, not a credential

    @property
    def periods_newest_first(self) -> bool:
        return self.period_order == "newest_first"


class SimReply(msgspec.Struct, frozen=True):
    """What the server answers: the HTTP layer waits ``delay`` seconds before sending it."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay: float = 0.0


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


class SimProject(msgspec.Struct, frozen=True):
    id: int
    title: str
    founder: int
    role: str


class SimProbe(msgspec.Struct, frozen=True):
    app_id: int
    project_id: int
    name: str


class SimTask(msgspec.Struct, frozen=True):
    """A monitored channel; ``start_f`` is the Unix time it started, the origin of ``info.time``."""

    task_id: int
    app_id: int
    project_id: int
    profile_id: int
    name: str
    uri: str
    start_f: float

    @property
    def transport(self) -> Literal["udp", "http"]:
        return "http" if self.uri.startswith("http") else "udp"


# --------------------------------------------------------------------------------------------------------------
# Trigger catalogue: names from the Boro documentation, details shaped like its partial description of ``info``.

DetailBuilder = Callable[[random.Random], JSON]


class _Trigger(NamedTuple):
    name: str
    group: str
    type: Literal["state", "event"]
    levels: tuple[str, ...]
    weight: int
    details: DetailBuilder


def _metric(unit: str, threshold: float, spread: float) -> DetailBuilder:
    def build(rng: random.Random) -> JSON:
        value = round(threshold + rng.uniform(-spread, spread), 3)
        return {"event_data": {"value": value, "threshold": threshold, "unit": unit}}

    return build


def _header_field(field: str, expected: int, seen: Sequence[int]) -> DetailBuilder:
    def build(rng: random.Random) -> JSON:
        return {"event_data": {"field": field, "value": rng.choice(seen), "expected": expected}}

    return build


def _audio_pid(rng: random.Random) -> JSON:
    return {"event_data": {"pid": rng.choice((7010, 7011, 7020))}}


def _no_signal(rng: random.Random) -> JSON:
    return {"event_data": {"reason": rng.choice(("no data", "no sync byte", "source unreachable"))}}


def _pid_errors(kind: str) -> DetailBuilder:
    def build(rng: random.Random) -> JSON:
        pids: dict[str, JSON] = {}
        for pid in rng.sample((256, 4096, 7010, 7011, 7020), k=rng.randint(1, 3)):
            stream_type = 27 if pid == 256 else 15
            pids[f"PID{pid}"] = {
                "count": rng.randint(1, 40),
                "type": stream_type,
                "detectedType": stream_type + rng.choice((0, 0, 0x100)),
                "program": f"Program {rng.randint(1, 4)}",
            }
        total = sum(pid["count"] for pid in pids.values())
        return {"count": total, "pids": pids, "event_data": {"error": kind, "threshold": 1}}

    return build


def _psi_diff(rng: random.Random) -> JSON:
    old_pid = rng.choice((4096, 4097, 4098))
    diff = [
        {"op": "replace", "path": "/programs/0/pmt_pid", "value": old_pid + 1, "prevValue": old_pid},
        {"op": "add", "path": "/programs/0/streams/2", "value": {"pid": 7012, "type": 15}},
    ]
    if rng.random() < 0.5:
        diff.append({"op": "remove", "path": "/programs/1", "prevValue": {"number": 2, "pmt_pid": 4200}})
    return {"event_data": {"table": rng.choice(("PAT", "PMT", "SDT")), "diff": diff}}


def _replace(path: str, options: Sequence[Any], rng: random.Random) -> JSON:
    """A JSON Patch ``replace`` between two different values, with Boro's ``prevValue`` beside ``value``."""
    previous, value = rng.sample(list(options), k=2)
    return {"op": "replace", "path": path, "value": value, "prevValue": previous}


def _video_diff(rng: random.Random) -> JSON:
    diff = [_replace("/width", (1920, 1280, 720), rng), _replace("/frame_rate", (25, 50, 29.97), rng)]
    if rng.random() < 0.5:
        diff.append(_replace("/codec", ("h264", "hevc", "mpeg2"), rng))
    return {"event_data": {"pid": 256, "diff": diff}}


def _audio_diff(rng: random.Random) -> JSON:
    diff = [_replace("/channels", (1, 2, 6), rng), _replace("/sample_rate", (32000, 44100, 48000), rng)]
    if rng.random() < 0.3:
        diff.append({"op": "remove", "path": "/language", "prevValue": "rus"})
    return {"event_data": {"pid": 7010, "diff": diff}}


def _http_error(rng: random.Random) -> JSON:
    code, reason = rng.choice(((404, "Not Found"), (403, "Forbidden"), (500, "Internal Server Error")))
    segment = f"https://cdn.example.net/live/index_{rng.randint(1000, 9999)}.ts"
    message = {
        "id": 1203,
        "params": {"url": segment},
        "HTTP_error": {"code": code, "reason": reason, "url": segment},
        "CURL_error": {"code": 22, "message": "HTTP response code said error"},
    }
    return {"messages": [message], "event_data": {"url": segment}}


def _download_error(rng: random.Random) -> JSON:
    code, text = rng.choice(
        ((28, "Timeout was reached"), (7, "Couldn't connect to server"), (6, "Could not resolve host"))
    )
    message = {"id": 1207, "params": {"attempt": rng.randint(1, 3)}, "CURL_error": {"code": code, "message": text}}
    return {"messages": [message]}


def _scte35_splice(rng: random.Random) -> JSON:
    return {
        "event_data": {
            "pid": 500,
            "command": "splice_insert",
            "event_id": rng.randint(1, 10**6),
            "duration": rng.choice((15.0, 30.0, 60.0)),
        }
    }


def _scte35_missing(rng: random.Random) -> JSON:
    return {"event_data": {"pid": 500, "silence": rng.randint(600, 3600)}}


def _restart(rng: random.Random) -> JSON:
    return {"event_data": {"reason": rng.choice(("watchdog", "config changed", "probe restarted"))}}


_CATALOGUE: tuple[_Trigger, ...] = (
    _Trigger("TosDscp", "eth", "event", ("warning",), 3, _header_field("dscp", 46, (0, 8, 34))),
    _Trigger("Ttl", "eth", "event", ("warning", "error"), 3, _header_field("ttl", 64, (1, 2, 16))),
    _Trigger("IatError", "eth", "state", ("error", "major"), 4, _metric("ms", 40.0, 30.0)),
    _Trigger("IatWarning", "eth", "state", ("warning",), 5, _metric("ms", 20.0, 10.0)),
    _Trigger("MlrError", "eth", "state", ("error", "major"), 3, _metric("packets/s", 10.0, 8.0)),
    _Trigger("MlrWarning", "eth", "state", ("warning",), 4, _metric("packets/s", 1.0, 0.9)),
    _Trigger("MaxBitrate", "eth", "state", ("warning", "error"), 2, _metric("bit/s", 12e6, 2e6)),
    _Trigger("MinBitrate", "eth", "state", ("warning", "error"), 2, _metric("bit/s", 2e6, 1e6)),
    _Trigger("ContinuityCountError", "etr", "event", ("warning", "error"), 6, _pid_errors("continuity_count")),
    _Trigger("PtsError", "etr", "event", ("warning", "error"), 4, _pid_errors("pts")),
    _Trigger("PsiChanged", "etr", "event", ("ok", "warning"), 2, _psi_diff),
    _Trigger("AudioTrackMissing", "qoe", "state", ("warning", "error"), 4, _audio_pid),
    _Trigger("VI_changed", "qoe", "event", ("ok", "warning"), 2, _video_diff),
    _Trigger("AudioInformation_changed", "qoe", "event", ("ok", "warning"), 2, _audio_diff),
    _Trigger("HttpError", "ott", "event", ("warning", "error", "major"), 5, _http_error),
    _Trigger("DownloadError", "ott", "event", ("error", "major"), 3, _download_error),
    _Trigger("BadSource", "sys", "state", ("major", "fatal"), 2, _no_signal),
    _Trigger("TaskRestarted", "sys", "event", ("warning", "fatal"), 1, _restart),
    _Trigger("Scte35SpliceInsert", "scte35", "event", ("ok",), 2, _scte35_splice),
    _Trigger("Scte35Missing", "scte35", "state", ("warning", "major"), 1, _scte35_missing),
)
TRIGGER_NAMES: Mapping[str, str] = {trigger.name: trigger.group for trigger in _CATALOGUE}
"""Every trigger name the simulator raises, with its group."""

_EXTRA_INFO: tuple[JSON, ...] = (
    {"probe_build": "5.4.2-1187"},
    {"stream": {"index": 2, "bitrate": 3_500_000}},
    {"tags": ["night-shift", "backup-feed"]},
    {"reference": "a3f1c2d4-0b1e-4c8a-9f27-6d2e8b7c5a10", "severity_score": 0.73},
)


def _triggers_for(transport: Literal["udp", "http"]) -> tuple[_Trigger, ...]:
    """Ethernet triggers watch multicast inputs only, OTT triggers HTTP inputs only."""
    excluded = "ott" if transport == "udp" else "eth"
    return tuple(trigger for trigger in _CATALOGUE if trigger.group != excluded)


# --------------------------------------------------------------------------------------------------------------
# The record store: current records plus the ordered log of their changes.


class _Alarm(msgspec.Struct, kw_only=True):
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


class _Entry(msgspec.Struct):
    alarm: _Alarm
    updated_at: int
    seq: int = 0


class _AlarmStore:
    """Records by id and the log of their changes, kept in ``updated_at`` order."""

    def __init__(self, on_change: Callable[[Change], None] | None = None) -> None:
        self._on_change = on_change
        self._entries: dict[int, _Entry] = {}
        self._by_project: dict[int, dict[int, _Entry]] = {}  # the same records per project: a listing reads its own
        self._log: list[Change] = []
        self._log_seconds: list[int] = []
        self._forgotten = 0  # changes dropped from the head of the log
        self._project_seqs: dict[int, list[int]] = {}  # each project's changes, by seq: a query scans its own

    @property
    def seq(self) -> int:
        return self._forgotten + len(self._log)

    def get(self, record_id: int) -> _Entry:
        return self._entries[record_id]

    def entries(self, project_id: int | None = None) -> Iterable[_Entry]:
        if project_id is None:
            return self._entries.values()
        return self._by_project.get(project_id, {}).values()

    def changes(self, after_seq: int = 0) -> list[Change]:
        return self._log[max(after_seq - self._forgotten, 0) :]

    def add(self, alarm: _Alarm, updated_at: int) -> None:
        entry = _Entry(alarm, updated_at)
        self._entries[alarm.id] = entry
        self._by_project.setdefault(alarm.project_id, {})[alarm.id] = entry
        self._record(entry, "created")

    def touch(self, entry: _Entry, updated_at: int) -> None:
        entry.updated_at = updated_at
        self._record(entry, "cleared")

    def index_of_second(self, second: int) -> int:
        """Position in the log of the first change with ``updated_at >= second``."""
        return self._forgotten + bisect.bisect_left(self._log_seconds, second)

    def changed_from(self, index: int, project_id: int) -> list[_Entry]:
        """One project's records whose latest change sits at or after log position ``index``, in change order."""
        seqs = self._project_seqs.get(project_id, [])
        found = []
        for seq in seqs[bisect.bisect_left(seqs, index + 1) :]:  # the change at position p has seq p + 1
            change = self._log[seq - 1 - self._forgotten]
            entry = self._entries[change.record_id]
            if entry.seq == change.seq:
                found.append(entry)
        return found

    def unchanged_before(self, index: int, wanted: Callable[[_Entry], bool], count: int) -> list[_Entry]:
        """Up to ``count`` records last changed just before log position ``index`` (oldest first)."""
        found: list[_Entry] = []
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

    def _record(self, entry: _Entry, transition: Literal["created", "cleared"]) -> None:
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


# --------------------------------------------------------------------------------------------------------------
# Request parsing.


class _BadRequestError(ValueError):
    """The envelope itself is unusable: HTTP 400."""


class _ParamError(ValueError):
    """One call's parameters are wrong: an error item."""


class _Call(NamedTuple):
    method: str
    call_id: Any
    has_id: bool
    params: JSON


class _AlarmFilter(NamedTuple):
    period_from: int | None = None
    period_to: int | None = None
    level: str | None = None
    groups: frozenset[str] | None = None
    names: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class _AlarmQuery:
    project_id: int
    task_ids: frozenset[int]
    active_only: bool
    limit: int
    page: int
    token: float | None
    filter: _AlarmFilter
    raw_token: float | int = 0

    def in_project_and_period(self, entry: _Entry) -> bool:
        wanted = self.filter
        return (
            entry.alarm.project_id == self.project_id
            and (wanted.period_from is None or entry.updated_at >= wanted.period_from)
            and (wanted.period_to is None or entry.updated_at <= wanted.period_to)
        )

    def matches(self, entry: _Entry) -> bool:
        alarm, wanted = entry.alarm, self.filter
        return (
            alarm.project_id == self.project_id
            and alarm.task_id in self.task_ids
            and (not self.active_only or alarm.active is True)
            and (wanted.period_from is None or entry.updated_at >= wanted.period_from)
            and (wanted.period_to is None or entry.updated_at <= wanted.period_to)
            and (wanted.level is None or alarm.level == wanted.level)
            and (wanted.groups is None or alarm.trigger_group in wanted.groups)
            and (wanted.names is None or alarm.name in wanted.names)
        )


def _parse_envelope(body: bytes) -> tuple[int, list[_Call]]:
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise _BadRequestError(f"request body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise _BadRequestError("request body must be a JSON object")
    user_id = document.get("user_id")
    if not _is_int(user_id):
        raise _BadRequestError("user_id must be an integer")
    methods = document.get("methods")
    if not isinstance(methods, list) or not methods:
        raise _BadRequestError("methods must be a non-empty list")
    return user_id, [_parse_call(item) for item in methods]


def _parse_call(item: Any) -> _Call:
    if not isinstance(item, dict) or not isinstance(item.get("method"), str):
        raise _BadRequestError("every entry of methods must be an object with a string 'method'")
    params = item.get("params", {})
    if not isinstance(params, dict):
        raise _BadRequestError(f"params of {item['method']} must be an object")
    return _Call(item["method"], item.get("id"), "id" in item, params)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_param(params: JSON, key: str, default: int | None = None, minimum: int | None = None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if not _is_int(value):
        raise _ParamError(f"{key} must be an integer")
    if minimum is not None and value < minimum:
        raise _ParamError(f"{key} must be at least {minimum}")
    return int(value)


def _required_int(params: JSON, key: str) -> int:
    value = _int_param(params, key)
    if value is None:
        raise _ParamError(f"{key} is required")
    return value


def _choice_param(params: JSON, key: str, allowed: Sequence[str], default: str | None) -> str | None:
    value = params.get(key, default)
    if value is not None and value not in allowed:
        raise _ParamError(f"{key} must be one of {', '.join(allowed)}")
    return value


def _id_selector(value: Any, key: str, every: Iterable[int]) -> frozenset[int]:
    """``id``, ``[id, ...]`` or ``"*"`` (``every``) as a set of ids."""
    if value == "*":
        return frozenset(every)
    if _is_int(value):
        return frozenset((value,))
    if isinstance(value, list) and all(_is_int(item) for item in value):
        return frozenset(value)
    raise _ParamError(f'{key} must be an integer, a list of integers or "*"')


def _name_list(raw: JSON, key: str, allowed: Sequence[str] | None) -> frozenset[str] | None:
    value = raw.get(key)
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _ParamError(f"filter.{key} must be a list of strings")
    unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
    if unknown:
        raise _ParamError(f"filter.{key} has unknown values: {', '.join(unknown)}")
    return frozenset(value)


def _parse_filter(raw: Any) -> _AlarmFilter:
    if raw is None:
        return _AlarmFilter()
    if not isinstance(raw, dict):
        raise _ParamError("filter must be an object")
    period_from = _int_param(raw, "period_from")
    period_to = _int_param(raw, "period_to")
    if period_from == 0:
        raise _ParamError("filter.period_from must not be 0")
    if period_from is not None and period_to is not None and period_to <= period_from:
        raise _ParamError("filter.period_to must be greater than filter.period_from")
    level = _choice_param(raw, "level", LEVELS, None)
    groups = _name_list(raw, "trigger_groups", TRIGGER_GROUPS)
    return _AlarmFilter(period_from, period_to, level, groups, _name_list(raw, "trigger_names", None))


def _token_param(params: JSON) -> float | None:
    token = params.get("update_token")
    if token is None:
        return None
    if isinstance(token, bool) or not isinstance(token, int | float) or not math.isfinite(token):
        raise _ParamError("update_token must be a number")
    return float(token)


def _page_count(total: int, limit: int) -> int:
    return -(-total // limit)


def _by_time_then_id(entry: _Entry) -> tuple[int, int]:
    return entry.updated_at, entry.alarm.id


def _chosen_personality(token_mode: TokenKind | None, personality: Personality | None) -> Personality:
    """``token_mode`` is a shortcut for ``Personality(token=...)``; giving both is a mistake unless they agree."""
    if token_mode is not None and token_mode not in TOKEN_KINDS:
        raise ValueError(f"token_mode must be one of {', '.join(TOKEN_KINDS)}, got {token_mode!r}")
    if personality is None:
        return Personality(token=token_mode or "sequence")
    if token_mode is not None and token_mode != personality.token:
        raise ValueError(f"token_mode {token_mode!r} contradicts personality.token {personality.token!r}")
    return personality


def _json_reply(status: int, document: Any, headers: Mapping[str, str] | None = None) -> SimReply:
    return SimReply(status, {**_JSON_HEADERS, **(headers or {})}, msgspec.json.encode(document))


# --------------------------------------------------------------------------------------------------------------


class _RequestFaults(NamedTuple):
    http_5xx: bool
    http_429: bool
    slow: bool
    malformed: bool


class _ItemFaults(NamedTuple):
    error: str | JSON | None
    repeat: bool


class Simulator:
    """A Boro server in memory. Not thread-safe; drive it from one thread or one event loop.

    Time: every change happens at a Unix time that never goes backwards and never precedes a time already
    observed by ``handle`` (the simulator's clock at a request), so no record can slip behind a token.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        projects: int = 2,
        probes_per_project: int = 2,
        tasks_per_probe: int = 3,
        token_mode: TokenKind | None = None,
        personality: Personality | None = None,
        faults: Faults = Faults(),  # noqa: B008 - frozen, immutable default
        hmac_keys: Mapping[str, bytes] | None = None,
        clock: Callable[[], float] = time.time,
        first_record_id: int = 13522793,
        user_id: int = 4,
        rate_per_second: float = 5.0,
        mean_state_seconds: float = 20.0,
        first_project_id: int = 23,
        first_app_id: int = 702,
        first_task_id: int = 241555,
        first_profile_id: int = 390,
        retain_seconds: float | None = None,
    ) -> None:
        self.personality = _chosen_personality(token_mode, personality)
        if rate_per_second < 0 or mean_state_seconds <= 0:
            raise ValueError("rate_per_second must be >= 0 and mean_state_seconds > 0")
        self.seed = seed
        self.user_id = user_id
        self.faults = faults
        self.rate_per_second = rate_per_second
        self.mean_state_seconds = mean_state_seconds
        self.retain_seconds = retain_seconds
        self._hmac_keys = dict(hmac_keys) if hmac_keys is not None else None
        self.clock = clock
        self._world_rng = random.Random(f"boro-world-{seed}")
        self._fault_rng = random.Random(f"boro-faults-{seed}")
        self._watchers: list[Callable[[Change], None]] = []
        self._store = _AlarmStore(self._notify)
        self._next_record_id = first_record_id
        self._pending_clears: list[tuple[float, int]] = []
        self._active_keys: set[tuple[int, str]] = set()
        self._restarts: dict[int, float] = {}  # probes stopped by ``Personality.probe_stops``: when they restart
        self._recording: list[SimTask] | None = None  # _recording_tasks() until a probe stops or starts
        self._time = self._server_time()
        self._last_advance = self._time
        self._next_arrival = self._time + self._arrival_gap()
        self._build_world(
            projects,
            probes_per_project,
            tasks_per_probe,
            (first_project_id, first_app_id, first_task_id, first_profile_id),
        )

    # ---- world ---------------------------------------------------------------------------------------------

    def _build_world(self, projects: int, probes: int, tasks: int, first_ids: tuple[int, int, int, int]) -> None:
        project_id, app_id, task_id, profile_id = first_ids
        self._projects: dict[int, SimProject] = {}
        self._probes: dict[int, SimProbe] = {}
        self._tasks: dict[int, SimTask] = {}
        self._alive: dict[int, bool] = {}
        for p in range(projects):
            own = p % 2 == 0
            founder, role = (self.user_id, "owner") if own else (self.user_id + 100 + p, "operator")
            self._projects[project_id + p] = SimProject(project_id + p, f"Project {project_id + p}", founder, role)
            for _ in range(probes):
                self._probes[app_id] = SimProbe(app_id, project_id + p, f"probe-{app_id}")
                self._alive[app_id] = True
                for _ in range(tasks):
                    self._tasks[task_id] = self._new_task(task_id, app_id, project_id + p, profile_id + p)
                    task_id += 1
                app_id += 1

    def _new_task(self, task_id: int, app_id: int, project_id: int, profile_id: int) -> SimTask:
        channel = task_id % 1000
        if task_id % 2:
            uri = f"https://cdn.example.net/live/ch{channel}/index.m3u8"
        else:
            uri = f"udp://239.1.{channel // 250}.{channel % 250 + 1}:1234"
        started = self._time - self._world_rng.uniform(3_600.0, 30 * 86_400.0)
        return SimTask(task_id, app_id, project_id, profile_id, f"Channel {channel}", uri, started)

    @property
    def token_mode(self) -> TokenKind:
        return self.personality.token

    def projects(self) -> list[SimProject]:
        return list(self._projects.values())

    def probes(self, project_id: int | None = None) -> list[SimProbe]:
        return [p for p in self._probes.values() if project_id is None or p.project_id == project_id]

    def tasks(self, project_id: int | None = None) -> list[SimTask]:
        return [t for t in self._tasks.values() if project_id is None or t.project_id == project_id]

    def probe_alive(self, app_id: int) -> bool:
        return self._alive[app_id]

    def set_probe_alive(self, app_id: int, alive: bool) -> None:
        """Start or stop a probe: a stopped probe's tasks raise nothing new and leave ``task_ids: "*"``.

        This overrides a stop of ``Personality.probe_stops``: the probe no longer restarts by itself.
        """
        if app_id not in self._probes:
            raise KeyError(f"no probe {app_id}")
        self._alive[app_id] = alive
        self._restarts.pop(app_id, None)
        self._recording = None

    def probe_restarts_at(self, app_id: int) -> float | None:
        """When a probe stopped by ``Personality.probe_stops`` starts again (server clock), else ``None``."""
        return self._restarts.get(app_id)

    def _live_tasks(self, project_id: int | None = None) -> list[SimTask]:
        return [t for t in self.tasks(project_id) if self._alive[t.app_id]]

    def _recording_tasks(self) -> list[SimTask]:
        """Tasks whose records still change: those of running probes and of probes stopped for a while."""
        if self._recording is None:
            self._recording = [t for t in self.tasks() if self._alive[t.app_id] or t.app_id in self._restarts]
        return self._recording

    def watch(self, watcher: Callable[[Change], None]) -> None:
        """Call ``watcher`` with every record change from now on, as it is made (webhooks are sent from this)."""
        self._watchers.append(watcher)

    def _notify(self, change: Change) -> None:
        for watcher in self._watchers:
            watcher(change)

    # ---- ground truth --------------------------------------------------------------------------------------

    def changes(self, after_seq: int = 0) -> list[Change]:
        """Every record change so far (after ``after_seq``), in the order they happened.

        With ``retain_seconds`` set, ``advance`` forgets changes (and records no longer active) older than that.
        """
        return list(self._store.changes(after_seq))

    def records(self) -> list[StoredRecord]:
        """The current state of every record, by (``updated_at``, ``id``)."""
        return [self._snapshot(entry) for entry in sorted(self._store.entries(), key=_by_time_then_id)]

    def record(self, record_id: int) -> StoredRecord:
        return self._snapshot(self._store.get(record_id))

    def current_token(self) -> int:
        """The token a request without ``update_token`` would get now (``record_time``: for an empty page)."""
        if self.personality.time_token:
            return int(self._time)
        return self._store.seq

    def server_time(self) -> float:
        """The server's clock now: the host clock plus ``Personality.clock_offset``."""
        return self._server_time()

    def _server_time(self, host_time: float | None = None) -> float:
        return (self.clock() if host_time is None else host_time) + self.personality.clock_offset

    @staticmethod
    def _snapshot(entry: _Entry) -> StoredRecord:
        alarm: JSON = msgspec.json.decode(msgspec.json.encode(entry.alarm))
        return StoredRecord(entry.seq, entry.updated_at, alarm)

    # ---- time and record generation ------------------------------------------------------------------------

    def advance(self, now: float | None = None, *, new_records: int | None = None) -> list[Change]:
        """Move the world to ``now`` (host clock, default: the clock) and return the changes made.

        New records arrive at ``rate_per_second`` (a seeded Poisson process; after a long idle gap only the last
        ``MAX_CATCH_UP_SECONDS`` are simulated), or exactly ``new_records`` spread evenly up to ``now``. Due
        states are cleared on the way; ``Faults.burst`` may add 101..250 records at ``now``;
        ``Personality.probe_stops`` may stop one probe for ``stop_seconds`` from the start of the step.
        """
        start_seq = self._store.seq
        target = max(self._server_time(now), self._time)
        arrivals = self._poisson_arrivals(target) if new_records is None else self._spread_arrivals(target, new_records)
        if self._world_rng.random() < self.faults.burst:
            arrivals += [target] * self._world_rng.randint(*BURST_SIZE)
        if self.personality.probe_stops > 0:
            self._maybe_stop_a_probe(self._time)
        for at in arrivals:
            self._restart_due(at)
            self._clear_due(at)
            self._create_random(at)
        self._restart_due(target)
        self._clear_due(target)
        self._last_advance = self._time = target
        if self.retain_seconds is not None:
            self._store.forget_before(int(target - self.retain_seconds))
        return self._store.changes(start_seq)

    def burst(self, n: int, now: float | None = None) -> list[Change]:
        """Create ``n`` records at the same instant ``now`` (default: the clock), after clearing due states."""
        start_seq = self._store.seq
        at = max(self._server_time(now), self._time)
        self._clear_due(at)
        for _ in range(n):
            self._create_random(at)
        self._time = at
        return self._store.changes(start_seq)

    def trigger(self, task_id: int, name: str, *, now: float | None = None, level: str | None = None) -> StoredRecord:
        """Raise trigger ``name`` on one task now: a scripted record for scenario tests."""
        trigger = next((t for t in _CATALOGUE if t.name == name), None)
        if trigger is None:
            raise KeyError(f"unknown trigger {name!r}; known: {', '.join(TRIGGER_NAMES)}")
        if level is not None and level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        at = self._at(self._server_time(now))
        entry = self._create(self._tasks[task_id], trigger, at, level=level, clear_later=False)
        return self._snapshot(entry)

    def clear(self, record_id: int, *, now: float | None = None) -> StoredRecord:
        """Clear an active state now (a state raised by ``trigger`` stays active until this is called)."""
        entry = self._store.get(record_id)
        if entry.alarm.active is not True:
            raise ValueError(f"record {record_id} is not an active state")
        self._clear(entry, self._at(self._server_time(now)))
        return self._snapshot(entry)

    def _at(self, when: float) -> float:
        """``when``, moved forward if needed so that time never runs backwards."""
        self._time = max(when, self._time)
        return self._time

    def _arrival_gap(self) -> float:
        if self.rate_per_second == 0:
            return math.inf
        return self._world_rng.expovariate(self.rate_per_second)

    def _poisson_arrivals(self, target: float) -> list[float]:
        self._next_arrival = max(self._next_arrival, target - MAX_CATCH_UP_SECONDS, self._time)
        arrivals = []
        while self._next_arrival <= target:
            arrivals.append(self._next_arrival)
            self._next_arrival += self._arrival_gap()
        return arrivals

    def _spread_arrivals(self, target: float, count: int) -> list[float]:
        start = max(self._last_advance, self._time)
        step = (target - start) / count if count else 0.0
        self._next_arrival = max(self._next_arrival, target)
        return [start + step * (i + 1) for i in range(count)]

    def _maybe_stop_a_probe(self, at: float) -> None:
        """``Personality.probe_stops``: one running probe, drawn from the world's generator, stops for a while."""
        if self._world_rng.random() >= self.personality.probe_stops:
            return
        running = [app_id for app_id, alive in self._alive.items() if alive]
        if running:
            app_id = self._world_rng.choice(running)
            self._alive[app_id] = False
            self._recording = None
            self._restarts[app_id] = at + self.personality.stop_seconds

    def _restart_due(self, at: float) -> None:
        for app_id, restart in list(self._restarts.items()):
            if restart <= at:
                self._alive[app_id] = True
                del self._restarts[app_id]
                self._recording = None

    def _create_random(self, at: float) -> None:
        tasks = self._recording_tasks()
        if not tasks:
            return
        task = self._world_rng.choice(tasks)
        self._create(task, self._pick_trigger(task), self._at(at))

    def _pick_trigger(self, task: SimTask) -> _Trigger:
        triggers = _triggers_for(task.transport)
        if not self._alive[task.app_id]:  # a probe stopped for a while: its tasks see events, no new states
            triggers = tuple(t for t in triggers if t.type == "event")
        weights = [t.weight for t in triggers]
        for _ in range(5):
            trigger = self._world_rng.choices(triggers, weights)[0]
            if trigger.type == "event" or (task.task_id, trigger.name) not in self._active_keys:
                return trigger
        events = [t for t in triggers if t.type == "event"]
        return self._world_rng.choices(events, [t.weight for t in events])[0]

    def _create(
        self, task: SimTask, trigger: _Trigger, at: float, *, level: str | None = None, clear_later: bool = True
    ) -> _Entry:
        rng = self._world_rng
        info = trigger.details(rng)
        info["time"] = round(at - self._event_lag() - task.start_f, 7)
        if rng.random() < 0.15:
            info.update(rng.choice(_EXTRA_INFO))
        alarm = _Alarm(
            id=self._next_record_id,
            project_id=task.project_id,
            app_id=task.app_id,
            task_id=task.task_id,
            profile_id=task.profile_id,
            trigger_time=int(at),
            active=True if trigger.type == "state" else msgspec.UNSET,
            level=level or rng.choice(trigger.levels),
            trigger_group=trigger.group,
            type=trigger.type,
            name=trigger.name,
            info=info,
        )
        self._next_record_id += 1
        self._store.add(alarm, int(at))
        if trigger.type == "state":
            self._active_keys.add((task.task_id, trigger.name))
            if clear_later:
                due = at + rng.expovariate(1.0 / self.mean_state_seconds)
                heapq.heappush(self._pending_clears, (due, alarm.id))
        return self._store.get(alarm.id)

    def _event_lag(self) -> float:
        """How long after the real event the server created the record; now and then a probe was cut off."""
        if self._world_rng.random() < 0.02:
            return self._world_rng.uniform(30.0, 600.0)
        return self._world_rng.uniform(0.0, 1.5)

    def _clear_due(self, until: float) -> None:
        while self._pending_clears and self._pending_clears[0][0] <= until:
            due, record_id = heapq.heappop(self._pending_clears)
            entry = self._store.get(record_id)
            if entry.alarm.active is True:
                self._clear(entry, self._at(due))

    def _clear(self, entry: _Entry, at: float) -> None:
        alarm = entry.alarm
        start_f = self._tasks[alarm.task_id].start_f
        end = round(at - self._world_rng.uniform(0.0, 1.0) - start_f, 7)
        alarm.info["time_end"] = max(end, float(alarm.info.get("time", end)))
        alarm.active = False
        self._active_keys.discard((alarm.task_id, alarm.name))
        self._store.touch(entry, int(at))

    # ---- the endpoint --------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> SimReply:
        """Answer one HTTP request. ``path`` is the request URI (path and query) as sent."""
        self._at(self._server_time())
        refusal = self._route_refusal(method, path) or self._auth_refusal(method, path, headers, body)
        if refusal is not None:
            return refusal
        faults = self._roll_request_faults()
        if faults.http_5xx:
            return SimReply(503, {"content-type": "text/html", "server": "nginx"}, _NGINX_503)
        if faults.http_429:
            retry = format(self.faults.retry_after, "g")
            return _json_reply(429, {"error": "too many requests"}, {"retry-after": retry})
        try:
            user_id, calls = _parse_envelope(body)
        except _BadRequestError as error:
            return _json_reply(400, {"error": str(error)})
        reply = _json_reply(200, {"reply": [self._answer(call, user_id) for call in calls]})
        if faults.malformed:
            reply = SimReply(200, reply.headers, self._mangle(reply.body))
        delay = self.faults.slow_seconds if faults.slow else 0.0
        return SimReply(reply.status, reply.headers, reply.body, delay)

    def _route_refusal(self, method: str, path: str) -> SimReply | None:
        if path.split("?", 1)[0] != ENDPOINT_PATH:
            return _json_reply(404, {"error": f"no such endpoint {path.split('?', 1)[0]}"})
        if method.upper() != "POST":
            return _json_reply(405, {"error": "only POST is allowed"}, {"allow": "POST"})
        return None

    def _auth_refusal(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> SimReply | None:
        if self._hmac_keys is None:
            return None
        moment = datetime.fromtimestamp(self.clock(), UTC)
        reason = hmac_auth.verify(method, path, headers, body, keys=self._hmac_keys, now=moment)
        if reason is None:
            return None
        return _json_reply(401, {"error": "HMAC signature refused", "reason": reason})

    def _roll_request_faults(self) -> _RequestFaults:
        draws = [self._fault_rng.random() for _ in range(4)]
        rates = (self.faults.http_5xx, self.faults.http_429, self.faults.slow, self.faults.malformed)
        return _RequestFaults(*(draw < rate for draw, rate in zip(draws, rates, strict=True)))

    def _mangle(self, body: bytes) -> bytes:
        variant = self._fault_rng.randrange(3)
        if variant == 0:
            return body[: max(len(body) // 2, 1)]
        if variant == 1:
            return body + b"}{"
        return b""

    def _answer(self, call: _Call, user_id: int) -> JSON:
        item: JSON = {"method": call.method}
        if call.has_id:
            item["id"] = call.call_id
        try:
            item["result"] = self._dispatch(call, user_id)
        except _ParamError as error:
            item["error"] = str(error)
        except _FaultyItemError as fault:
            item["error"] = fault.payload
        return item

    def _dispatch(self, call: _Call, user_id: int) -> Any:
        if call.method == "TaskAlarms":
            item_faults = self._roll_item_faults()
            return self._checked(call, user_id, lambda params: self._task_alarms(params, item_faults))
        handlers: dict[str, Callable[[JSON], Any]] = {
            "ProjectsList": self._projects_list,
            "AppList": self._app_list,
            "AppTasks": self._app_tasks,
            "TaskInfo": self._task_info,
        }
        return self._checked(call, user_id, handlers.get(call.method))

    def _checked(self, call: _Call, user_id: int, handler: Callable[[JSON], Any] | None) -> Any:
        if handler is None:
            raise _ParamError(f"unknown method {call.method!r}")
        if user_id != self.user_id:
            raise _ParamError(f"access denied for user_id {user_id}")
        return handler(call.params)

    def _roll_item_faults(self) -> _ItemFaults:
        error = self._fault_rng.random() < self.faults.error_item
        repeat = self._fault_rng.random() < self.faults.repeat
        payload = self._fault_rng.choice(_ERROR_ITEMS)
        return _ItemFaults(payload if error else None, repeat)

    # ---- TaskAlarms ----------------------------------------------------------------------------------------

    def _task_alarms(self, params: JSON, faults: _ItemFaults) -> JSON:
        query = self._alarm_query(params)
        if faults.error is not None:
            raise _FaultyItemError(faults.error)
        if query.token is None:
            return self._alarm_page(query)
        if not self.personality.time_token:
            return self._alarms_after_sequence(query, query.token, faults.repeat)
        return self._alarms_from_second(query, query.token, faults.repeat)

    def _alarm_query(self, params: JSON) -> _AlarmQuery:
        project_id = self._project_param(params)
        _choice_param(params, "kind", ("alarm",), "alarm")
        active_only = params.get("active_states_only", False)
        if not isinstance(active_only, bool):
            raise _ParamError("active_states_only must be a boolean")
        limit = min(_int_param(params, "limit_value", DEFAULT_LIMIT, minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
        page = _int_param(params, "page", 1, minimum=1) or 1
        return _AlarmQuery(
            project_id,
            self._task_selection(params, project_id),
            active_only,
            limit,
            page,
            _token_param(params),
            _parse_filter(params.get("filter")),
            params.get("update_token", 0),
        )

    def _project_param(self, params: JSON) -> int:
        project_id = _required_int(params, "project_id")
        if project_id not in self._projects:
            raise _ParamError(f"project {project_id} not found")
        return project_id

    def _task_selection(self, params: JSON, project_id: int) -> frozenset[int]:
        key = "task_ids" if "task_ids" in params else "task_id"
        if key not in params:
            raise _ParamError("task_ids is required")
        every = (t.task_id for t in self._live_tasks(project_id))
        return _id_selector(params[key], key, every)

    def _alarm_page(self, query: _AlarmQuery) -> JSON:
        if self.personality.moving_records > 0:
            self._maybe_move_a_record(query)
        newest_first = self.personality.periods_newest_first
        entries = self._store.entries(query.project_id)
        matching = sorted(filter(query.matches, entries), key=_by_time_then_id, reverse=newest_first)
        start = (query.page - 1) * query.limit
        chunk = matching[start : start + query.limit]
        record_time = self.personality.token == "record_time"  # noqa: S105 - a cursor style, not a credential
        token = chunk[-1].updated_at if record_time and chunk else self.current_token()
        return self._alarm_result(chunk, query, query.page, len(matching), token)

    def _maybe_move_a_record(self, query: _AlarmQuery) -> None:
        """``Personality.moving_records``: one active state of the project in the period clears right now."""
        if self._world_rng.random() >= self.personality.moving_records:
            return
        candidates = sorted(
            (
                entry
                for entry in self._store.entries(query.project_id)
                if query.in_project_and_period(entry) and entry.alarm.active is True
            ),
            key=_by_time_then_id,
        )
        if candidates:
            self._clear(self._world_rng.choice(candidates), self._time)

    def _alarms_after_sequence(self, query: _AlarmQuery, token: float, repeat: bool) -> JSON:
        boundary = max(math.floor(token), 0)
        matching = [e for e in self._store.changed_from(boundary, query.project_id) if query.matches(e)]
        if self.personality.tokens_newest_first:
            matching.reverse()
        chunk = matching[: query.limit]
        full = len(chunk) == query.limit
        next_token = max(entry.seq for entry in chunk) if full else self._store.seq
        return self._alarm_result(
            self._with_repeats(chunk, query, boundary, repeat), query, 1, len(matching), next_token
        )

    def _alarms_from_second(self, query: _AlarmQuery, token: float, repeat: bool) -> JSON:
        first_second = math.floor(token) + 1 if self.personality.exclusive_tokens else math.ceil(token)
        boundary = self._store.index_of_second(first_second)
        changed = [e for e in self._store.changed_from(boundary, query.project_id) if query.matches(e)]
        matching = sorted(changed, key=_by_time_then_id, reverse=self.personality.tokens_newest_first)
        chunk = matching[: query.limit]
        next_token = self._time_token(chunk, len(chunk) == query.limit, query.raw_token)
        return self._alarm_result(
            self._with_repeats(chunk, query, boundary, repeat), query, 1, len(matching), next_token
        )

    def _time_token(self, chunk: list[_Entry], full: bool, asked: float | int) -> float | int:
        """The next time token: what each reading of ``Personality.token`` hands out after this page."""
        kind = self.personality.token
        if kind == "record_time":
            return chunk[-1].updated_at if chunk else asked
        if kind == "timestamp" and full:
            return max(entry.updated_at for entry in chunk)
        return int(self._time)

    def _with_repeats(self, chunk: list[_Entry], query: _AlarmQuery, boundary: int, repeat: bool) -> list[_Entry]:
        """``Faults.repeat``: fill a short page's spare room with records already served before the token."""
        room = min(3, query.limit - len(chunk))
        if not repeat or room <= 0:
            return chunk
        return self._store.unchanged_before(boundary, query.matches, room) + chunk

    @staticmethod
    def _alarm_result(chunk: list[_Entry], query: _AlarmQuery, page: int, total: int, token: float) -> JSON:
        return {
            "alarms": [msgspec.Raw(msgspec.json.encode(entry.alarm)) for entry in chunk],  # as of this call
            "current_page": page,
            "limit_value": query.limit,
            "total_pages": _page_count(total, query.limit),
            "update_token": token,
        }

    # ---- discovery methods ---------------------------------------------------------------------------------

    def _projects_list(self, params: JSON) -> JSON:
        kind = _choice_param(params, "type", ("own", "shared", "all"), "all")
        limit = min(_int_param(params, "limit_value", DEFAULT_LIMIT, minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
        page = _int_param(params, "page", 1, minimum=1) or 1
        chosen = [p for p in self._projects.values() if kind == "all" or (p.founder == self.user_id) == (kind == "own")]
        return {
            "projects": [self._project_view(p) for p in chosen[(page - 1) * limit : page * limit]],
            "current_page": page,
            "total_pages": _page_count(len(chosen), limit),
            "limit_value": limit,
        }

    def _project_view(self, project: SimProject) -> JSON:
        live_probes = [p for p in self.probes(project.id) if self._alive[p.app_id]]
        live_tasks = self._live_tasks(project.id)
        return {
            "id": project.id,
            "title": project.title,
            "founder": project.founder,
            "role": project.role,
            "live_apps_count": len(live_probes),
            "live_channels_count": len(live_tasks),
            "live_streams_count": 3 * len(live_tasks),
        }

    def _app_list(self, params: JSON) -> list[JSON]:
        project_id = self._project_param(params)
        status = _choice_param(params, "app_status", ("active", "stopped", "all"), "all")
        return [
            {"app_id": p.app_id, "name": p.name, "alive": self._alive[p.app_id]}
            for p in self.probes(project_id)
            if status == "all" or self._alive[p.app_id] == (status == "active")
        ]

    def _app_tasks(self, params: JSON) -> list[JSON]:
        project_id = self._project_param(params)
        app_ids = _id_selector(params.get("app_ids", "*"), "app_ids", (p.app_id for p in self.probes(project_id)))
        replies = []
        for probe in self.probes(project_id):
            if probe.app_id in app_ids:
                live = [t.task_id for t in self._live_tasks(project_id) if t.app_id == probe.app_id]
                replies.append({"app_id": probe.app_id, "live_tasks": live, "sub_tasks": {str(t): [] for t in live}})
        return replies

    def _task_info(self, params: JSON) -> list[JSON]:
        project_id = self._project_param(params)
        every = (t.task_id for t in self.tasks(project_id))
        wanted = _id_selector(params.get("task_ids", "*"), "task_ids", every)
        return [
            {
                "task_id": t.task_id,
                "app_id": t.app_id,
                "uri": t.uri,
                "name": t.name,
                "status": "running" if self._alive[t.app_id] else "stopped",
                "start": int(t.start_f),
                "start_f": t.start_f,
            }
            for t in self.tasks(project_id)
            if t.task_id in wanted
        ]


class _FaultyItemError(Exception):
    """``Faults.error_item`` struck: the item carries ``payload`` as its ``error``."""

    def __init__(self, payload: str | JSON) -> None:
        super().__init__(str(payload))
        self.payload = payload
