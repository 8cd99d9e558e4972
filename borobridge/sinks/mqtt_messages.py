"""CloudEvents as MQTT messages: topics, retained current state, MQTT 5 binary or 3.1.1 structured (pure).

Every field put into a topic is escaped, so that a value can neither split a topic level nor make the topic
invalid: ``%``, ``/``, ``+``, ``#`` and the control characters (U+0000-U+001F, U+007F-U+009F) become ``%XX``
(``%`` and the UTF-8 bytes in upper-case hex), everything else stays as it is. ``urllib.parse.unquote`` reverses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from borobridge.events import CloudEvent
from borobridge.settings import MqttSettings
from borobridge.transitions import Transition

_RESERVED: Final = re.compile(r"[%/+#\x00-\x1f\x7f-\x9f]")


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
    fields = {
        "project": topic_level(attributes["project"]),
        "task": topic_level(attributes["task"]),
        "group": topic_level(attributes["triggergroup"]),
        "name": topic_level(attributes["subject"]),
        "alarm_id": topic_level(str(event.record_id)),
    }
    message = _encode(event, settings, settings.topics.transitions.format(**fields))
    if event.transition is Transition.EVENT:
        return [message]
    active_topic = settings.topics.active.format(**fields)
    if event.transition is Transition.CLEARED:
        return [message, MqttMessage(active_topic, b"", retain=True)]
    retained = _encode(event, settings, active_topic, retain=True)
    return [message, retained]


def topic_level(value: str) -> str:
    """``value`` escaped to stay one valid topic level: reserved characters become ``%XX``."""
    return _RESERVED.sub(_percent, value)


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode())


def _encode(event: CloudEvent, settings: MqttSettings, topic: str, *, retain: bool = False) -> MqttMessage:
    if settings.protocol == "mqttv5":
        properties = tuple(event.mqtt_user_properties())
        content_type = event.attributes["datacontenttype"]
        return MqttMessage(topic, event.data, retain, content_type, properties)
    return MqttMessage(topic, event.structured(), retain)
