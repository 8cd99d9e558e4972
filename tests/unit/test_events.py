"""CloudEvents: deterministic identity, derived times, and every binding parsed back by the cloudevents SDK."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jsonschema
import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1 import kafka as ce_v1_kafka
from cloudevents.v1.http import CloudEvent as V1CloudEvent

from borobridge.events import CloudEvent, EventFactory, ForeignRecordError, event_type, from_kafka_record
from borobridge.schemas import event_schema
from borobridge.transitions import AlarmTransition, Transition, TransitionMemory
from tests.support.records import decoded, record_bytes

FACTORY = EventFactory("boro-1")


def build(record_id: int = 13522793, **fields: Any) -> list[CloudEvent]:
    return [FACTORY.build(t) for t in TransitionMemory().feed([decoded(record_id, **fields)])]


def test_identity_is_deterministic_and_names_the_task() -> None:
    first, again = build()[0], build()[0]
    assert first == again
    assert first.attributes["id"] == "13522793-raised"
    assert first.attributes["source"] == "boro://boro-1/projects/23/tasks/241555"
    assert first.attributes["type"] == "com.elecard.boro.alarm.raised.v1"
    assert first.key == first.attributes["partitionkey"] == "23/241555"


def test_an_event_carries_its_transition_and_record_id_typed() -> None:
    raised, cleared = build(41, active=False)
    [event] = build(42, type="event")
    assert [(e.transition, e.record_id) for e in (raised, cleared, event)] == [
        (Transition.RAISED, 41),
        (Transition.CLEARED, 41),
        (Transition.EVENT, 42),
    ]


def test_an_event_read_back_from_kafka_carries_them_too() -> None:
    structured = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    for event in build(43, active=False):
        for headers, value in ((event.kafka_binary_headers(), event.data), (structured, event.structured())):
            read_back = from_kafka_record(headers, value)
            assert (read_back.transition, read_back.record_id) == (event.transition, event.record_id)
            assert read_back == event


@pytest.mark.parametrize(
    ("event_id", "problem"),
    [(None, "no id attribute"), ("77", "names no transition"), ("x-raised", "names no transition")],
)
def test_a_record_whose_id_names_no_transition_is_foreign(event_id: str | None, problem: str) -> None:
    headers = [("ce_source", b"elsewhere")] + ([("ce_id", event_id.encode())] if event_id is not None else [])
    with pytest.raises(ForeignRecordError, match=problem):
        from_kafka_record(headers, b"{}")


def test_cleared_time_is_derived_from_the_state_duration() -> None:
    raised, cleared = build(active=False, info={"time": 100.0, "time_end": 160.5})
    assert raised.attributes["time"] == "2020-05-27T09:08:49.000Z"
    assert cleared.attributes["time"] == "2020-05-27T09:09:49.500Z"
    data = json.loads(cleared.data)
    assert data["duration_seconds"] == 60.5
    assert data["time_derived"] is True
    assert json.loads(raised.data)["synthetic"] is True


def test_cleared_without_end_time_falls_back_to_trigger_time() -> None:
    cleared = build(active=False, info={"time": 100.0})[1]
    assert cleared.attributes["time"] == "2020-05-27T09:08:49.000Z"
    assert "time_derived" not in json.loads(cleared.data)


def test_data_keeps_the_record_byte_exact() -> None:
    raw = record_bytes(5, unknown_top_level={"x": 1})
    transition = AlarmTransition(Transition.RAISED, decoded(5).record, raw)
    data = json.loads(FACTORY.build(transition).data)
    assert json.dumps(data["alarm"], separators=(",", ":")).encode() == raw
    assert data["alarm"]["info"]["vendor_extra"] == [1, 2]


def expected_attributes(event: CloudEvent) -> dict[str, Any]:
    attributes: dict[str, Any] = dict(event.attributes)
    attributes["time"] = dt.datetime.fromisoformat(attributes["time"])
    return attributes


def assert_same(parsed: BaseCloudEvent, event: CloudEvent) -> None:
    assert parsed.get_attributes() == expected_attributes(event)
    assert parsed.get_data() == json.loads(event.data)


@pytest.mark.parametrize("event", build(active=False, info={"time": 1.0, "time_end": 2.0}) + build(9, type="event"))
def test_every_binding_parses_back_with_the_sdk(event: CloudEvent) -> None:
    fmt = JSONFormat()
    binary = ce_kafka.KafkaMessage(dict(event.kafka_binary_headers()), event.key.encode(), event.data)
    assert_same(ce_kafka.from_binary(binary, fmt), event)
    structured = ce_kafka.KafkaMessage(
        {"content-type": b"application/cloudevents+json"}, event.key.encode(), event.structured()
    )
    assert_same(ce_kafka.from_structured(structured, fmt), event)
    mqtt_headers = {f"ce-{name}": value for name, value in event.mqtt_user_properties()}
    mqtt_headers["content-type"] = event.attributes["datacontenttype"]
    assert_same(ce_http.from_binary(ce_http.HTTPMessage(mqtt_headers, event.data), fmt), event)


@pytest.mark.parametrize(
    "event",
    build(active=False, info={"time": 1.0, "time_end": 2.0})
    + build(9, type="event")
    + build(10, project_id=7, task_id=8, app_id=9, level="warning", trigger_group="tr101290"),
)
def test_shared_kafka_headers_equal_the_headers_of_the_attributes(event: CloudEvent) -> None:
    """The factory's ready-made headers are a cache: an event rebuilt from its attributes alone has the same."""
    assert event.shared is not None
    plain = CloudEvent(dict(event.attributes), event.data, event.transition, event.record_id)
    assert plain.shared is None
    assert event.kafka_binary_headers() == plain.kafka_binary_headers()
    assert [name for name, _ in plain.kafka_binary_headers()][-1] == "content-type"


def test_partitionkey_header_follows_the_spec_where_the_v1_sdk_drops_it() -> None:
    """The Kafka binding maps every attribute to a ce_ header; cloudevents.v1's to_binary omits partitionkey.

    borobridge follows the spec: the header is there, and equals the record key, so a reader that ignores the
    key still sees the attribute.
    """
    event = build()[0]
    ours = dict(event.kafka_binary_headers())
    assert ours["ce_partitionkey"] == b"23/241555"
    sdk_event = V1CloudEvent(dict(event.attributes), json.loads(event.data))
    assert "ce_partitionkey" not in ce_v1_kafka.to_binary(sdk_event).headers


def test_data_validates_against_its_published_schema() -> None:
    events = build(active=False, info={"time": 1.0, "time_end": 2.0}) + build(9, type="event", active=None)
    for event in events:
        kind = Transition(event.attributes["type"].split(".")[-2])
        assert event.attributes["type"] == event_type(kind)
        schema = event_schema(kind)
        assert event.attributes["dataschema"] == schema["$id"]
        jsonschema.validate(json.loads(event.data), schema)


def test_schema_refuses_a_record_without_id() -> None:
    data = json.loads(build()[0].data)
    del data["alarm"]["id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, event_schema(Transition.RAISED))


def test_a_time_that_cannot_be_formatted_makes_a_rejected_record_not_an_exception() -> None:
    memory = TransitionMemory()
    good = memory.feed([decoded(1, type="event", active=None)])
    bad = memory.feed([decoded(2, active=False, trigger_time=1590570529, info={"time": 0.0, "time_end": 3e11})])
    later = memory.feed([decoded(3, type="event", active=None)])
    events, rejected = FACTORY.build_all([*good, *bad, *later])
    assert [event.attributes["id"] for event in events] == ["1-event", "2-raised", "3-event"]
    [dead] = rejected
    assert dead.project_id == 23
    assert dead.raw == record_bytes(2, active=False, trigger_time=1590570529, info={"time": 0.0, "time_end": 3e11})
    assert "cannot be formatted as an RFC 3339 time" in dead.reason
    assert FACTORY.build_all(good) == ([FACTORY.build(good[0])], [])
