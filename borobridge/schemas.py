"""JSON Schemas of everything borobridge publishes or reads, generated from its msgspec types.

``borobridge schemas`` writes them into ``schemas/``; a test fails when a committed file differs from what this
module generates. Event schemas carry their ``dataschema`` URI as ``$id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from borobridge.checkpoint import Checkpoint
from borobridge.events import schema_uri
from borobridge.settings import Settings
from borobridge.settings_validation import convert_hooks
from borobridge.transitions import Transition

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
CHECKPOINT_SCHEMA_ID: Final = "urn:borobridge:schema:checkpoint.v2"
CONFIG_SCHEMA_ID: Final = "urn:borobridge:schema:config.v1"


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


class AlarmEventData(msgspec.Struct):
    """The ``data`` of an alarm CloudEvent."""

    transition: str
    alarm: AlarmDocument
    duration_seconds: float | None = None
    time_derived: bool = False
    synthetic: bool = False


def event_schema(transition: Transition) -> dict[str, Any]:
    """The schema of the ``data`` of one transition type."""
    schema = _schema(AlarmEventData, schema_uri(transition), f"borobridge alarm {transition.value} event data")
    properties = schema["$defs"]["AlarmEventData"]["properties"]
    properties["transition"] = {"const": transition.value}
    return schema


def generate() -> dict[str, bytes]:
    """Every schema, by file name."""
    documents = {f"alarm.{kind.value}.v1.json": event_schema(kind) for kind in Transition}
    documents["checkpoint.v2.json"] = _schema(Checkpoint, CHECKPOINT_SCHEMA_ID, "borobridge stream checkpoint")
    documents["config.schema.json"] = _schema(Settings, CONFIG_SCHEMA_ID, "borobridge configuration file")
    return {name: msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n" for name, doc in documents.items()}


def write(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in generate().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written


def _schema(kind: type, schema_id: str, title: str) -> dict[str, Any]:
    schema = msgspec.json.schema(kind, schema_hook=convert_hooks.schema)
    return {"$schema": DRAFT, "$id": schema_id, "title": title, **schema}
