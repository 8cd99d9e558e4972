"""View Structs of the Control API wire format, with decoders built once, and the documented alarm record.

Only the fields the bridge reads are decoded; each alarm record is also kept as its raw bytes so that the
CloudEvent ``data`` carries it losslessly, unknown fields included. :class:`AlarmDocument`, beside the view it
extends, is the whole record as Boro documents it: the published event schemas are generated from it.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

Token = int | float  # Boro's update_token: a counter or a Unix time, as the server chooses (see boro-api.md)


class ReplyItem(msgspec.Struct, frozen=True):
    """One entry of ``reply``: the answer to one method call (an absent member stays an empty Raw)."""

    method: str = ""
    id: int | None = None
    result: msgspec.Raw = msgspec.Raw()
    error: msgspec.Raw = msgspec.Raw()


class Envelope(msgspec.Struct, frozen=True):
    """The whole reply body."""

    reply: list[ReplyItem]


class TaskAlarmsResult(msgspec.Struct, frozen=True):
    """The ``result`` of TaskAlarms; records stay raw until each is decoded on its own."""

    alarms: list[msgspec.Raw]
    update_token: Token
    current_page: int = 1
    limit_value: int = 25
    total_pages: int = 1


class AlarmInfo(msgspec.Struct, frozen=True):
    """The two times of ``info`` the bridge derives event times from (seconds since the task started)."""

    time: float | None = None
    time_end: float | None = None


class AlarmRecord(msgspec.Struct, frozen=True):
    """One alarm record as the bridge reads it."""

    id: int
    project_id: int
    app_id: int
    task_id: int
    trigger_time: int
    name: str
    level: str
    trigger_group: str
    type: str
    active: bool | None = None
    profile_id: int | None = None
    kind: str = "alarm"
    info: AlarmInfo = AlarmInfo()


# The record as Boro documents it, for the published JSON Schemas: every documented field, where AlarmRecord
# above decodes only those the bridge reads; the fields both have agree (tests/test_schemas.py checks it).


class AlarmInfoDocument(msgspec.Struct):
    """``info`` as Boro documents it; every field optional, unknown fields kept."""

    time: float | None = None
    time_end: float | None = None
    count: int | None = None
    pids: dict[str, dict[str, Any]] | None = None
    event_data: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None


class AlarmDocument(msgspec.Struct):
    """The Boro alarm record exactly as Boro sent it."""

    id: int
    project_id: int
    app_id: int
    task_id: int
    trigger_time: int
    name: str
    level: str
    trigger_group: str
    type: Literal["state", "event"]
    active: bool | None = None
    profile_id: int | None = None
    kind: str = "alarm"
    info: AlarmInfoDocument | None = None


class Project(msgspec.Struct, frozen=True):
    """A project from ProjectsList."""

    id: int
    title: str = ""


class ProjectsListResult(msgspec.Struct, frozen=True):
    """The ``result`` of ProjectsList."""

    projects: list[Project]
    current_page: int = 1
    total_pages: int = 1


ENVELOPE_DECODER: Final = msgspec.json.Decoder(Envelope)
TASK_ALARMS_DECODER: Final = msgspec.json.Decoder(TaskAlarmsResult)
RECORD_DECODER: Final = msgspec.json.Decoder(AlarmRecord)
PROJECTS_DECODER: Final = msgspec.json.Decoder(ProjectsListResult)
JSON_DECODER: Final = msgspec.json.Decoder()
REQUEST_ENCODER: Final = msgspec.json.Encoder()


def error_text(raw: msgspec.Raw) -> str:
    """The ``error`` of a reply item as readable text, whether Boro sent a string or an object."""
    try:
        value: Any = JSON_DECODER.decode(raw)
    except msgspec.DecodeError:
        return bytes(raw).decode("utf-8", "replace")
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
