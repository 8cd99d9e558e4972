"""Alarm records built by hand for unit tests, encoded exactly as Boro sends them."""

from __future__ import annotations

from typing import Any

import msgspec

from borobridge.boro.models import RECORD_DECODER
from borobridge.boro.queries import DecodedRecord


def record_bytes(record_id: int, **fields: Any) -> bytes:
    """A state record of task 241555 in project 23, active unless told otherwise."""
    document: dict[str, Any] = {
        "id": record_id,
        "project_id": 23,
        "app_id": 702,
        "task_id": 241555,
        "profile_id": 390,
        "trigger_time": 1590570529,
        "active": True,
        "kind": "alarm",
        "level": "warning",
        "trigger_group": "qoe",
        "type": "state",
        "name": "AudioTrackMissing",
        "info": {"event_data": {"pid": 7010}, "time": 2322878.0005373, "vendor_extra": [1, 2]},
    }
    document.update(fields)
    return msgspec.json.encode(document)


def decoded(record_id: int, **fields: Any) -> DecodedRecord:
    """The record as the client hands it on."""
    raw = record_bytes(record_id, **fields)
    return DecodedRecord(RECORD_DECODER.decode(raw), raw)
