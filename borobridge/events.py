"""Transitions to CloudEvents, and their Kafka and MQTT bindings (pure, no I/O).

Identity is deterministic: ``source`` names the Boro server, project and task; ``id`` is the record id and the
transition. Replaying the same record always gives the same pair, which CloudEvents defines as a duplicate.

``time`` is the trigger time for ``raised`` and ``event``. For ``cleared`` it is derived: the trigger time plus
the state's duration (``info.time_end - info.time``, both in task-relative seconds); when Boro gave no end time
it falls back to the trigger time, and ``data.time_derived`` says which one was used. A time that cannot be
formatted (the client rejects such records already) makes its record a dead letter: :meth:`EventFactory.build_all`
never fails a batch for one record.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from borobridge.boro.queries import RejectedRecord
from borobridge.errors import RecordError
from borobridge.transitions import AlarmTransition, Transition

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
TYPE_PREFIX: Final = "com.elecard.boro.alarm"
SCHEMA_VERSION: Final = 1
ATTRIBUTES: Final = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "partitionkey",
    "severity",
    "triggergroup",
    "project",
    "task",
    "probe",
)


def event_type(transition: Transition) -> str:
    """The CloudEvent ``type`` of a transition, versioned with its data schema."""
    return f"{TYPE_PREFIX}.{transition.value}.v{SCHEMA_VERSION}"


def schema_uri(transition: Transition) -> str:
    """The ``dataschema`` URI of a transition's data, also the ``$id`` of the published schema."""
    return f"urn:borobridge:schema:alarm.{transition.value}.v{SCHEMA_VERSION}"


class EventData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The ``data`` of every alarm CloudEvent: the Boro record byte-exact, plus what the bridge derived."""

    transition: str
    alarm: msgspec.Raw
    duration_seconds: float | None = None
    time_derived: bool = False
    synthetic: bool = False


class StructuredEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A CloudEvent in structured JSON mode."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    dataschema: str
    partitionkey: str
    severity: str
    triggergroup: str
    project: str
    task: str
    probe: str
    data: msgspec.Raw


_ENCODER: Final = msgspec.json.Encoder()
_HEADER_NAMES: Final = {name: f"ce_{name}" for name in ATTRIBUTES}


@dataclass(slots=True)  # not frozen: one is built per transition, and a frozen init costs 0.3 us more
class CloudEvent:
    """One encoded CloudEvent: its attributes (all strings), its JSON ``data``, and the transition and record id its
    ``id`` names, typed; never changed once built.

    Events built by :class:`EventFactory` also carry the Kafka headers they share with every event of their task,
    probe and transition kind, encoded once; that is only a cache, and the headers are the same without it.
    """

    attributes: dict[str, str]
    data: bytes
    transition: Transition
    record_id: int
    shared: SharedHeaders | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """The Kafka record key: ``project/task``, equal to ``partitionkey``."""
        return self.attributes["partitionkey"]

    def structured(self) -> bytes:
        """The event as ``application/cloudevents+json``."""
        return _ENCODER.encode(StructuredEvent(**self.attributes, data=msgspec.Raw(self.data)))

    def kafka_binary_headers(self) -> list[tuple[str, bytes]]:
        """Kafka binary mode headers: ``ce_<attribute>`` in attribute order, then ``content-type``."""
        shared, attributes = self.shared, self.attributes
        if shared is None:
            headers = [
                (_HEADER_NAMES[name], value.encode()) for name, value in attributes.items() if name != "datacontenttype"
            ]
            headers.append(("content-type", attributes["datacontenttype"].encode()))
            return headers
        return [
            _SPEC_VERSION_HEADER,
            ("ce_id", attributes["id"].encode()),
            shared.source,
            shared.type,
            ("ce_subject", attributes["subject"].encode()),
            ("ce_time", attributes["time"].encode()),
            shared.dataschema,
            shared.partitionkey,
            ("ce_severity", attributes["severity"].encode()),
            ("ce_triggergroup", attributes["triggergroup"].encode()),
            shared.project,
            shared.task,
            shared.probe,
            _CONTENT_TYPE_HEADER,
        ]

    def mqtt_user_properties(self) -> list[tuple[str, str]]:
        """MQTT 5 binary mode user properties: every attribute but ``datacontenttype``, unprefixed."""
        return [(name, value) for name, value in self.attributes.items() if name != "datacontenttype"]


_STRUCTURED_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])


class ForeignRecordError(ValueError):
    """A Kafka record that is not one of the bridge's CloudEvents: its ``id`` names no record and transition."""


def from_kafka_record(headers: Sequence[tuple[str, bytes]], value: bytes) -> CloudEvent:
    """The CloudEvent of a record the bridge wrote to Kafka, in binary or structured mode.

    :class:`ForeignRecordError` when its ``id`` is not ``<record id>-<transition>``; another ValueError (or a
    msgspec error) when it cannot be decoded at all.
    """
    header_map = {name: content.decode() for name, content in headers}
    if header_map.get("content-type", "").startswith("application/cloudevents+json"):
        fields = _STRUCTURED_DECODER.decode(value)
        data = bytes(fields.pop("data"))
        attributes = {name: msgspec.json.decode(raw) for name, raw in fields.items()}
    else:
        data = value
        found = {name.removeprefix("ce_"): text for name, text in header_map.items() if name.startswith("ce_")}
        found["datacontenttype"] = header_map.get("content-type", CONTENT_TYPE)
        attributes = {name: found[name] for name in ATTRIBUTES if name in found}
    record_id, transition = _identity(attributes.get("id"))
    return CloudEvent(attributes, data, transition, record_id)


def _identity(event_id: object) -> tuple[int, Transition]:
    """The record id and the transition an event ``id`` names (the one place an id is read back)."""
    if not isinstance(event_id, str):
        raise ForeignRecordError("no id attribute" if event_id is None else f"an id that is no string: {event_id!r}")
    record, _, kind = event_id.rpartition("-")
    if kind not in _TRANSITION_NAMES or not (record.isascii() and record.isdigit()):
        raise ForeignRecordError(f"an id that names no transition: {event_id!r}")
    return int(record), Transition(kind)


@dataclass(frozen=True, slots=True)
class _Kind:
    """What every event of one transition kind shares, computed once."""

    value: str
    id_suffix: str
    type: str
    dataschema: str


_KINDS: Final = {kind: _Kind(kind.value, f"-{kind.value}", event_type(kind), schema_uri(kind)) for kind in Transition}
_SPEC_VERSION_HEADER: Final = ("ce_specversion", SPEC_VERSION.encode())
_CONTENT_TYPE_HEADER: Final = ("content-type", CONTENT_TYPE.encode())
_SHAPE_CACHE_LIMIT: Final = 65_536
_TRANSITION_NAMES: Final = frozenset(kind.value for kind in Transition)


@dataclass(frozen=True, slots=True)
class SharedHeaders:
    """The Kafka binary headers every event of one task, probe and transition kind has in common."""

    source: tuple[str, bytes]
    type: tuple[str, bytes]
    dataschema: tuple[str, bytes]
    partitionkey: tuple[str, bytes]
    project: tuple[str, bytes]
    task: tuple[str, bytes]
    probe: tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class _Shape:
    """The attributes every event of one task, probe and transition kind has in common, and their headers."""

    kind: _Kind
    source: str
    partitionkey: str
    project: str
    task: str
    probe: str
    headers: SharedHeaders


class EventFactory:
    """Builds the CloudEvent of each transition for one Boro server."""

    def __init__(self, server_name: str) -> None:
        self._prefix = f"boro://{server_name}/projects/"
        self._shapes: dict[tuple[int, int, int, Transition], _Shape] = {}

    def source(self, project_id: int, task_id: int) -> str:
        """The ``source`` of every event of one task."""
        return f"{self._prefix}{project_id}/tasks/{task_id}"

    def build_all(self, transitions: Sequence[AlarmTransition]) -> tuple[list[CloudEvent], list[RejectedRecord]]:
        """The events of ``transitions`` in order, and the records whose event cannot be built, with the reason."""
        try:
            return [self.build(transition) for transition in transitions], []
        except RecordError:
            return self._build_each(transitions)

    def _build_each(self, transitions: Sequence[AlarmTransition]) -> tuple[list[CloudEvent], list[RejectedRecord]]:
        events: list[CloudEvent] = []
        rejected: list[RejectedRecord] = []
        for transition in transitions:
            try:
                events.append(self.build(transition))
            except RecordError as error:
                rejected.append(RejectedRecord(transition.record.project_id, transition.raw, str(error)))
        return events, rejected

    def build(self, transition: AlarmTransition) -> CloudEvent:
        """The CloudEvent of one transition; :class:`RecordError` when its time cannot be formatted."""
        record = transition.record
        key = (record.project_id, record.task_id, record.app_id, transition.kind)
        shape = self._shapes.get(key) or self._new_shape(key)
        kind = shape.kind
        duration, time, derived = _timing(transition)
        data = EventData(
            transition=kind.value,
            alarm=msgspec.Raw(transition.raw),
            duration_seconds=duration,
            time_derived=derived,
            synthetic=transition.synthetic,
        )
        attributes = {
            "specversion": SPEC_VERSION,
            "id": f"{record.id}{kind.id_suffix}",
            "source": shape.source,
            "type": kind.type,
            "subject": record.name,
            "time": time,
            "datacontenttype": CONTENT_TYPE,
            "dataschema": kind.dataschema,
            "partitionkey": shape.partitionkey,
            "severity": record.level,
            "triggergroup": record.trigger_group,
            "project": shape.project,
            "task": shape.task,
            "probe": shape.probe,
        }
        return CloudEvent(attributes, _ENCODER.encode(data), transition.kind, record.id, shape.headers)

    def _new_shape(self, key: tuple[int, int, int, Transition]) -> _Shape:
        if len(self._shapes) >= _SHAPE_CACHE_LIMIT:
            self._shapes.clear()
        shape = self._shapes[key] = _new_shape(self.source(key[0], key[1]), key)
        return shape


def _new_shape(source: str, key: tuple[int, int, int, Transition]) -> _Shape:
    project_id, task_id, app_id, transition = key
    kind = _KINDS[transition]
    project, task, probe = str(project_id), str(task_id), str(app_id)
    partitionkey = f"{project}/{task}"
    headers = SharedHeaders(
        source=_header("source", source),
        type=_header("type", kind.type),
        dataschema=_header("dataschema", kind.dataschema),
        partitionkey=_header("partitionkey", partitionkey),
        project=_header("project", project),
        task=_header("task", task),
        probe=_header("probe", probe),
    )
    return _Shape(kind, source, partitionkey, project, task, probe, headers)


def _header(attribute: str, value: str) -> tuple[str, bytes]:
    return _HEADER_NAMES[attribute], value.encode()


def _timing(transition: AlarmTransition) -> tuple[float | None, str, bool]:
    record = transition.record
    if transition.kind is not Transition.CLEARED:
        return None, _whole_second(record.trigger_time), False
    info = record.info
    if info.time is None or info.time_end is None:
        return None, _whole_second(record.trigger_time), False
    duration = max(0.0, info.time_end - info.time)
    return duration, _rfc3339(record.trigger_time + duration), True


@functools.lru_cache(maxsize=4096)
def _whole_second(unix: int) -> str:
    """Trigger times are whole seconds, and many events share one: formatted once each."""
    return _rfc3339(unix)


def _rfc3339(unix: float) -> str:
    try:
        moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise RecordError(f"event time {unix!r} cannot be formatted as an RFC 3339 time ({exc})") from exc
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
