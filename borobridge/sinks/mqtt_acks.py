"""The MQTT 5 PUBACK reason codes that aiomqtt 2 drops: which publish the broker refused, and why.

aiomqtt 2 returns from ``publish`` once any PUBACK arrived, success or refusal (0x87 not authorised, 0x97 quota
exceeded, ...). :class:`PubackReasons` chains into the callbacks of the paho client underneath one aiomqtt client:
it notes the message id paho gave each publish (per asyncio task, so concurrent publishes never mix) and the
reason code of every refused PUBACK; :meth:`PubackReasons.refusal` then tells the task whether its last publish
was refused. MQTT 3.1.1 has no reason codes: there, a broker that refuses a publish cannot say so.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final, cast

import aiomqtt
from paho.mqtt.client import CallbackOnPublish_v2, MQTTMessageInfo
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

_last_mid: Final[ContextVar[int | None]] = ContextVar("borobridge_mqtt_last_mid", default=None)


class PubackReasons:
    """Remembers the refused PUBACKs of one aiomqtt client, until the publishing task asks for them."""

    def __init__(self, client: aiomqtt.Client) -> None:
        paho: PahoClient = client._client  # aiomqtt 2 offers no other way to the PUBACK
        self._refused: dict[int, ReasonCode] = {}
        self._forward = cast("CallbackOnPublish_v2 | None", paho.on_publish)  # aiomqtt uses paho's API version 2
        self._paho_publish = paho.publish
        paho.on_publish = self._on_publish
        paho.publish = self._publish  # type: ignore[method-assign]

    def refusal(self) -> ReasonCode | None:
        """The failure reason of the publish this task awaited last; None when the broker accepted it."""
        mid = _last_mid.get()
        return None if mid is None else self._refused.pop(mid, None)

    def _publish(self, *args: Any, **kwargs: Any) -> MQTTMessageInfo:
        info = self._paho_publish(*args, **kwargs)
        self._refused.pop(info.mid, None)  # a message id is reused only once its earlier publish is done
        _last_mid.set(info.mid)
        return info

    def _on_publish(
        self,
        client: PahoClient,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.is_failure:
            self._refused[mid] = reason_code
        if self._forward is not None:
            self._forward(client, userdata, mid, reason_code, properties)
