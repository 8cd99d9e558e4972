"""The AsyncAPI catalogue: accepted by the official AsyncAPI parser, and true to what the bridge sends."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from borobridge.events import ATTRIBUTES, CloudEvent, EventFactory
from borobridge.schemas import documents, generate
from borobridge.settings import KafkaTopicSettings, MqttTopicSettings
from borobridge.transitions import AlarmTransition, Transition
from tests.support.records import decoded, record_bytes

ROOT = Path(__file__).parents[2]
VALIDATOR = ROOT / "scripts" / "asyncapi" / "validate.mjs"
PARSER = ROOT / "scripts" / "asyncapi" / "node_modules" / "@asyncapi" / "parser"
COMMITTED = ROOT / "schemas" / "asyncapi.json"


def catalogue() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(generate()["asyncapi.json"])
    return document


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """The official parser's verdict on a file; the test setup installs it (scripts/setup-node)."""
    node = shutil.which("node")
    assert node is not None, "node is missing: install Node.js 20 or later"
    assert PARSER.is_dir(), "@asyncapi/parser is missing: run scripts/setup-node"
    return subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=120, check=False)


def event(kind: Transition) -> CloudEvent:
    record = decoded(7, active=kind is Transition.RAISED, type="event" if kind is Transition.EVENT else "state")
    return EventFactory("boro-1").build(AlarmTransition(kind, record.record, record_bytes(7)))


def test_official_parser_accepts_the_committed_catalogue() -> None:
    done = validate(COMMITTED)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stdout


def test_official_parser_refuses_a_broken_catalogue(tmp_path: Path) -> None:
    broken = catalogue()
    broken["channels"]["mqttStatus"]["address"] = "borobridge/{bridge_name}/status"
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    done = validate(path)
    assert done.returncode == 1
    assert "bridge_name" in done.stdout


def test_channels_are_the_default_topics() -> None:
    kafka, mqtt = KafkaTopicSettings(), MqttTopicSettings()
    addresses = {name: channel["address"] for name, channel in catalogue()["channels"].items()}
    assert addresses == {
        "alarmEvents": kafka.events,
        "activeAlarms": kafka.active,
        "checkpoints": kafka.checkpoints,
        "kafkaSchemas": kafka.schemas,
        "deadLetters": kafka.dead_letters,
        "mqttTransitions": mqtt.transitions,
        "mqttActive": mqtt.active,
        "mqttStatus": mqtt.status,
        "mqttSchemas": mqtt.schemas,
    }


def test_every_channel_has_a_send_operation_of_all_its_messages() -> None:
    document = catalogue()
    for name, channel in document["channels"].items():
        operation = document["operations"][f"send_{name}"]
        assert operation["action"] == "send"
        assert [ref["$ref"].rpartition("/")[2] for ref in operation["messages"]] == list(channel["messages"])


@pytest.mark.parametrize("kind", list(Transition))
def test_kafka_binary_trait_names_every_header_the_bridge_sets(kind: Transition) -> None:
    headers = catalogue()["components"]["messageTraits"]["cloudEventsKafkaBinary"]["headers"]
    sent = dict(event(kind).kafka_binary_headers())
    assert sorted(headers["properties"]) == sorted(sent) == sorted(headers["required"])
    jsonschema.validate({name: value.decode() for name, value in sent.items()}, headers)


@pytest.mark.parametrize("kind", list(Transition))
def test_mqtt_binary_trait_names_every_user_property_the_bridge_sets(kind: Transition) -> None:
    headers = catalogue()["components"]["messageTraits"]["cloudEventsMqttBinary"]["headers"]
    sent = dict(event(kind).mqtt_user_properties())
    assert sorted(headers["properties"]) == sorted(sent) == sorted(set(ATTRIBUTES) - {"datacontenttype"})
    jsonschema.validate(sent, headers)


@pytest.mark.parametrize("kind", list(Transition))
@pytest.mark.parametrize("mode", ["KafkaBinary", "KafkaStructured", "Mqtt5", "Mqtt311"])
def test_each_message_payload_validates_what_the_bridge_sends(kind: Transition, mode: str) -> None:
    document = catalogue()
    message = document["components"]["messages"][f"alarm{kind.value.capitalize()}{mode}"]
    built = event(kind)
    binary = mode in {"KafkaBinary", "Mqtt5"}
    sent = json.loads(built.data if binary else built.structured())
    schema = {**document, "$schema": "https://json-schema.org/draft/2020-12/schema", **message["payload"]}
    jsonschema.validate(sent, schema)
    data = sent if binary else sent["data"]
    data["transition"] = "bogus"
    with pytest.raises(jsonschema.ValidationError, match="bogus"):
        jsonschema.validate(sent, schema)


def test_published_under_its_id_and_file_name() -> None:
    published = {document.name: document for document in documents()}
    assert published["asyncapi"].uri == catalogue()["id"] == "urn:borobridge:asyncapi"
    assert published["asyncapi"].content == COMMITTED.read_bytes()
