"""The AsyncAPI 3.0 catalogue of every Kafka and MQTT channel the bridge writes (pure, built from the code).

Topic names are the configuration's defaults. Each message embeds its JSON Schema from ``schemas/`` under
``components.schemas`` (``$defs`` references rewritten to point there). CloudEvents follow the CloudEvents working
draft "AsyncAPI with CloudEvents": binary mode as a headers trait (``ce_*`` on Kafka, unprefixed MQTT 5 user
properties), structured mode as an envelope whose ``data`` is the event schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from borobridge import __version__
from borobridge.events import ATTRIBUTES, CONTENT_TYPE, SPEC_VERSION, STRUCTURED_CONTENT_TYPE, event_type, schema_uri
from borobridge.settings import KafkaTopicSettings, MqttTopicSettings
from borobridge.transitions import Transition

ASYNCAPI_ID: Final = "urn:borobridge:asyncapi"
KAFKA_BINDING: Final = "0.5.0"
MQTT_BINDING: Final = "0.2.0"
CHECKPOINT_SCHEMA: Final = "checkpoint.v2"
_KAFKA_MODES: Final = ("KafkaBinary", "KafkaStructured")
_MQTT_MODES: Final = ("Mqtt5", "Mqtt311")

Node = dict[str, Any]

ATTRIBUTE_DESCRIPTIONS: Final = {
    "specversion": "CloudEvents version.",
    "id": "`<record id>-<transition>`: the same for every replay of a record (source + id = duplicate).",
    "source": "`boro://<server>/projects/<project>/tasks/<task>`.",
    "type": "Transition type, versioned with its data schema.",
    "subject": "Boro trigger key name.",
    "time": "RFC 3339; for `cleared` derived from the trigger time and the state's duration.",
    "datacontenttype": "Content type of `data`.",
    "dataschema": "URI of the JSON Schema of `data`, published on the schema channels.",
    "partitionkey": "`<project>/<task>`, equal to the Kafka record key.",
    "severity": "Boro alarm level.",
    "triggergroup": "Boro trigger group.",
    "project": "Boro project id.",
    "task": "Boro task id.",
    "probe": "Boro probe (application) id.",
}


def document(data_schemas: Mapping[str, Node]) -> Node:
    """The AsyncAPI document; ``data_schemas`` are the JSON Schemas by file stem (``alarm.raised.v1``...)."""
    kafka, mqtt = KafkaTopicSettings(), MqttTopicSettings()
    channels = _kafka_channels(kafka) | _mqtt_channels(mqtt)
    return {
        "asyncapi": "3.0.0",
        "id": ASYNCAPI_ID,
        "info": {
            "title": "borobridge",
            "version": __version__,
            "description": "Elecard Boro alarm transitions as CloudEvents on Apache Kafka and MQTT. Topic names are "
            "the defaults; every one is configurable.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {"host": "{bootstrap_servers}", "protocol": "kafka", "variables": _variables("bootstrap_servers")},
            "mqtt": {"host": "{host}", "protocol": "mqtt", "variables": _variables("host")},
        },
        "channels": channels,
        "operations": {f"send_{name}": _operation(name, channel) for name, channel in channels.items()},
        "components": {
            "schemas": {name: _embedded(name, schema) for name, schema in data_schemas.items()}
            | {f"cloudevent.{kind.value}": _envelope(kind) for kind in Transition},
            "messages": _messages(),
            "messageTraits": {"cloudEventsKafkaBinary": _kafka_trait(), "cloudEventsMqttBinary": _mqtt_trait()},
        },
    }


def _variables(name: str) -> Node:
    return {name: {"description": f"`{name}` of the bridge's configuration."}}


def _kafka_channels(topics: KafkaTopicSettings) -> Node:
    events = [message for kind in Transition for message in _event_messages(kind, _KAFKA_MODES)]
    active = [*_event_messages(Transition.RAISED, _KAFKA_MODES), "tombstone"]
    return {
        "alarmEvents": _kafka_channel(
            topics.events,
            "Every transition of one Boro project, keyed `<project>/<task>` (one partition per task's order).",
            events,
            "delete",
            {"project_id": {"description": "Boro project id."}},
        ),
        "activeAlarms": _kafka_channel(
            topics.active, "The latest `raised` event of every active alarm; a tombstone once it clears.", active
        ),
        "checkpoints": _kafka_channel(topics.checkpoints, "The cursor of every stream.", ["checkpoint"]),
        "kafkaSchemas": _kafka_channel(
            topics.schemas, "Every JSON Schema and this document, keyed by `$id` (`id` here).", ["schemaDocument"]
        ),
        "deadLetters": _kafka_channel(
            topics.dead_letters, "Boro records that could not become events.", ["deadLetter"], "delete"
        ),
    }


def _mqtt_channels(topics: MqttTopicSettings) -> Node:
    return {
        "mqttTransitions": _mqtt_channel(
            topics.transitions,
            "Every transition, QoS 1, not retained. Topic levels are percent-escaped.",
            [message for kind in Transition for message in _event_messages(kind, _MQTT_MODES)],
        ),
        "mqttActive": _mqtt_channel(
            topics.active,
            "The `raised` event of each active alarm, retained; an empty retained message removes it.",
            [*_event_messages(Transition.RAISED, _MQTT_MODES), "retainedClear"],
        ),
        "mqttStatus": _mqtt_channel(topics.status, "`online` or `offline` (the last will), retained.", ["status"]),
        "mqttSchemas": _mqtt_channel(
            topics.schemas, "Every JSON Schema and this document, retained, by file name.", ["schemaDocument"]
        ),
    }


_PARAMETERS: Final = {
    "project": "Boro project id.",
    "task": "Boro task id.",
    "group": "Boro trigger group.",
    "name": "Boro trigger key name.",
    "alarm_id": "Boro alarm record id.",
    "bridge": "The bridge's `name`.",
}


def _kafka_channel(
    address: str, description: str, messages: list[str], policy: str = "compact", parameters: Node | None = None
) -> Node:
    channel: Node = {"address": address, "description": description, "servers": [{"$ref": "#/servers/kafka"}]}
    if parameters:
        channel["parameters"] = parameters
    channel["messages"] = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    channel["bindings"] = {
        "kafka": {"topicConfiguration": {"cleanup.policy": [policy]}, "bindingVersion": KAFKA_BINDING}
    }
    return channel


def _mqtt_channel(address: str, description: str, messages: list[str]) -> Node:
    parameters = {name: {"description": text} for name, text in _PARAMETERS.items() if f"{{{name}}}" in address}
    channel: Node = {"address": address, "description": description, "servers": [{"$ref": "#/servers/mqtt"}]}
    if parameters:
        channel["parameters"] = parameters
    channel["messages"] = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    return channel


def _operation(name: str, channel: Node) -> Node:
    operation: Node = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/{message}"} for message in channel["messages"]],
    }
    if channel["servers"][0]["$ref"].endswith("mqtt"):
        retain = name in {"mqttActive", "mqttStatus", "mqttSchemas"}
        operation["bindings"] = {"mqtt": {"qos": 1, "retain": retain, "bindingVersion": MQTT_BINDING}}
    return operation


def _event_messages(kind: Transition, modes: tuple[str, ...]) -> list[str]:
    return [f"alarm{kind.value.capitalize()}{mode}" for mode in modes]


_MODES: Final = {  # message name suffix: (title, binary trait or None for structured, Kafka key binding)
    "KafkaBinary": ("Kafka binary mode", "cloudEventsKafkaBinary", True),
    "KafkaStructured": ("Kafka structured mode", None, True),
    "Mqtt5": ("MQTT 5 binary mode", "cloudEventsMqttBinary", False),
    "Mqtt311": ("MQTT 3.1.1 structured mode", None, False),
}


def _messages() -> Node:
    messages = {
        f"alarm{kind.value.capitalize()}{suffix}": _event_message(kind, f"alarm{kind.value.capitalize()}{suffix}", mode)
        for kind in Transition
        for suffix, mode in _MODES.items()
    }
    return messages | _other_messages()


def _event_message(kind: Transition, name: str, mode: tuple[str, str | None, bool]) -> Node:
    title, trait, kafka = mode
    schema = _stem(kind) if trait is not None else f"cloudevent.{kind.value}"
    message: Node = {
        "name": name,
        "title": f"alarm {kind.value} ({title})",
        "summary": f"CloudEvent type `{event_type(kind)}`, data schema `{schema_uri(kind)}`.",
        "contentType": CONTENT_TYPE if trait is not None else STRUCTURED_CONTENT_TYPE.split(";")[0],
        "payload": {"$ref": f"#/components/schemas/{schema}"},
    }
    if trait is not None:
        message["traits"] = [{"$ref": f"#/components/messageTraits/{trait}"}]
    if kafka:
        message["bindings"] = _kafka_key("`<project>/<task>`; `<project>/<task>/<alarm id>` on the active topic.")
    return message


def _other_messages() -> Node:
    return {
        "tombstone": {
            "name": "tombstone",
            "summary": "No value: the alarm cleared.",
            "payload": {"type": "null"},
            "bindings": _kafka_key("`<project>/<task>/<alarm id>`"),
        },
        "checkpoint": {
            "name": "checkpoint",
            "summary": "A stream's cursor.",
            "payload": {"$ref": f"#/components/schemas/{CHECKPOINT_SCHEMA}"},
            "bindings": _kafka_key("Stream id."),
        },
        "schemaDocument": {
            "name": "schemaDocument",
            "summary": "A JSON Schema (2020-12) from schemas/, or this AsyncAPI document.",
            "payload": {"type": "object"},
            "bindings": _kafka_key("The schema's `$id`, or this document's `id`."),
        },
        "deadLetter": {
            "name": "deadLetter",
            "summary": "The Boro record's raw bytes as Boro sent them, and why it could not become an event.",
            "contentType": "application/octet-stream",
            "headers": _object(
                {
                    "borobridge_reason": "What is wrong with the record.",
                    "borobridge_stream": "The stream it came from.",
                    "borobridge_project": "Boro project id.",
                }
            ),
            "payload": {"type": "string", "description": "raw bytes"},
            "bindings": _kafka_key("Stream id."),
        },
        "retainedClear": {
            "name": "retainedClear",
            "summary": "Empty retained payload: the alarm cleared, the retained state is removed.",
            "payload": {"type": "string", "maxLength": 0},
        },
        "status": {
            "name": "status",
            "summary": "Bridge status; `offline` is also the last will.",
            "contentType": "text/plain",
            "payload": {"type": "string", "enum": ["online", "offline"]},
        },
    }


def _kafka_key(description: str) -> Node:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": KAFKA_BINDING}}


def _kafka_trait() -> Node:
    headers = _attributes({name: f"ce_{name}" for name in ATTRIBUTES if name != "datacontenttype"})
    content_type = {"type": "string", "const": CONTENT_TYPE, "description": "`datacontenttype`."}
    headers["properties"]["content-type"] = content_type
    headers["required"].append("content-type")
    return {"summary": "CloudEvents binary content mode on Kafka: attributes as `ce_` headers.", "headers": headers}


def _mqtt_trait() -> Node:
    headers = _attributes({name: name for name in ATTRIBUTES if name != "datacontenttype"})
    return {
        "summary": "CloudEvents binary content mode on MQTT 5: attributes as user properties, `datacontenttype` as "
        "the Content Type property.",
        "headers": headers,
    }


def _attributes(names: Mapping[str, str]) -> Node:
    """An object schema of the CloudEvent attributes under the given names; every one is always present."""
    properties = {header: _attribute(name) for name, header in names.items()}
    return {"type": "object", "required": list(properties), "properties": properties}


def _attribute(name: str) -> Node:
    node: Node = {"type": "string", "description": ATTRIBUTE_DESCRIPTIONS[name]}
    if name == "specversion":
        node["const"] = SPEC_VERSION
    elif name == "datacontenttype":
        node["const"] = CONTENT_TYPE
    return node


def _envelope(kind: Transition) -> Node:
    """The structured-mode CloudEvent of one transition: the attributes and ``data``."""
    envelope = _attributes({name: name for name in ATTRIBUTES})
    envelope["properties"]["type"]["const"] = event_type(kind)
    envelope["properties"]["dataschema"]["const"] = schema_uri(kind)
    envelope["properties"]["data"] = {"$ref": f"#/components/schemas/{_stem(kind)}"}
    envelope["required"].append("data")
    return envelope


def _object(descriptions: Mapping[str, str]) -> Node:
    properties = {name: {"type": "string", "description": text} for name, text in descriptions.items()}
    return {"type": "object", "required": list(properties), "properties": properties}


def _stem(kind: Transition) -> str:
    return schema_uri(kind).rpartition(":")[2]


def _embedded(name: str, schema: Node) -> Node:
    """A JSON Schema placed at ``#/components/schemas/<name>``: its own ``$defs`` references point there."""
    body = {key: value for key, value in schema.items() if key not in {"$schema", "$id"}}
    rebased: Node = _rebased(body, f"#/components/schemas/{name}/")
    return rebased


def _rebased(node: Any, base: str) -> Any:
    if isinstance(node, dict):
        return {
            key: base + value[2:] if key == "$ref" and value.startswith("#/") else _rebased(value, base)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebased(item, base) for item in node]
    return node
