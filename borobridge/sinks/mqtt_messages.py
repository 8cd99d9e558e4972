"""CloudEvents as MQTT messages: topics, retained current state, MQTT 5 binary or 3.1.1 structured (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from borobridge.events import CloudEvent
from borobridge.settings import MqttSettings


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One PUBLISH: payload, retain flag, and the MQTT 5 properties when the protocol has them."""

    topic: str
    payload: bytes
    retain: bool = False
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


def event_messages(event: CloudEvent, settings: MqttSettings) -> list[MqttMessage]:
    """The transition message, plus the retained state of the alarm (set on raise, removed on clear)."""
    attributes = event.attributes
    record_id, _, transition = attributes["id"].rpartition("-")
    fields = {
        "project": attributes["project"],
        "task": attributes["task"],
        "group": attributes["triggergroup"],
        "name": attributes["subject"],
        "alarm_id": record_id,
    }
    message = _encode(event, settings, settings.topics.transitions.format(**fields))
    if transition == "event":
        return [message]
    active_topic = settings.topics.active.format(**fields)
    if transition == "cleared":
        return [message, MqttMessage(active_topic, b"", retain=True)]
    retained = _encode(event, settings, active_topic, retain=True)
    return [message, retained]


def _encode(event: CloudEvent, settings: MqttSettings, topic: str, *, retain: bool = False) -> MqttMessage:
    if settings.protocol == "mqttv5":
        properties = tuple(event.mqtt_user_properties())
        content_type = event.attributes["datacontenttype"]
        return MqttMessage(topic, event.data, retain, content_type, properties)
    return MqttMessage(topic, event.structured(), retain)
