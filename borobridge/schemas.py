"""JSON Schemas of everything borobridge publishes or reads, generated from its msgspec types.

``borobridge schemas`` writes them, and the AsyncAPI catalogue of the channels that carry them, into ``schemas/``;
a test fails when a committed file differs from what this module generates. Event schemas carry their
``dataschema`` URI as ``$id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from borobridge import asyncapi
from borobridge.boro.models import AlarmDocument
from borobridge.checkpoint import Checkpoint
from borobridge.events import schema_uri
from borobridge.settings import Settings
from borobridge.settings_validation import convert_hooks
from borobridge.transitions import Transition

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
CHECKPOINT_SCHEMA_ID: Final = "urn:borobridge:schema:checkpoint.v2"
CONFIG_SCHEMA_ID: Final = "urn:borobridge:schema:config.v1"


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


@dataclass(frozen=True, slots=True)
class Document:
    """One published document: its file stem (the MQTT topic's ``{name}``), its URI (the Kafka key), its bytes."""

    name: str
    uri: str
    content: bytes


def documents() -> list[Document]:
    """Every JSON Schema, then the AsyncAPI document that embeds the event and checkpoint schemas."""
    schemas = {f"alarm.{kind.value}.v1": event_schema(kind) for kind in Transition}
    schemas["checkpoint.v2"] = _schema(Checkpoint, CHECKPOINT_SCHEMA_ID, "borobridge stream checkpoint")
    config = _schema(Settings, CONFIG_SCHEMA_ID, "borobridge configuration file")
    catalogue = asyncapi.document(schemas)
    published = [Document(name, schema["$id"], _encode(schema)) for name, schema in schemas.items()]
    published.append(Document("config.schema", config["$id"], _encode(config)))
    published.append(Document("asyncapi", catalogue["id"], _encode(catalogue)))
    return published


def generate() -> dict[str, bytes]:
    """Every document, by file name."""
    return {f"{document.name}.json": document.content for document in documents()}


def write(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in generate().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written


def _encode(document: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


def _schema(kind: type, schema_id: str, title: str) -> dict[str, Any]:
    schema = msgspec.json.schema(kind, schema_hook=convert_hooks.schema)
    return {"$schema": DRAFT, "$id": schema_id, "title": title, **schema}
