"""The one exception tree of borobridge.

::

    BridgeError                      retriable = False
    ├── ConfigError                  invalid configuration; .errors lists "path: problem" lines
    ├── BoroError                    anything that went wrong talking to Boro (retriable = True); .fix
    │   ├── BoroTransportError       connection refused, timeout, TLS failure
    │   ├── BoroHTTPError            a 4xx/5xx status; .status, .retry_after, .body_excerpt
    │   ├── BoroDecodeError          a body that is not the documented JSON; .body_excerpt
    │   └── BoroReplyError           a reply item with "error", no "result" or an unknown id; .method, .item_id
    ├── RecordError                  a record cannot become an event: it becomes a dead letter, never stops a poll
    ├── SinkError                    a sink could not deliver (retriable = True)
    │   ├── KafkaDeliveryError       the Kafka client refused or timed out; the transaction was aborted
    │   │   ├── KafkaClientError     a Kafka client call failed; .cause is the client's own error
    │   │   ├── EventTopicError      projects' events topics cannot be created or used; .topics by project
    │   │   └── KafkaUnreachableError  no broker answers at start-up: retried, unlike a refusal (TLS, SASL)
    │   ├── MqttDeliveryError        no PUBACK in time or the connection dropped
    │   │   └── MqttRefusedError     the broker refused a publish (MQTT 5 reason code >= 0x80); .topic, .reason
    │   └── TopicPolicyError         an existing topic has the wrong cleanup policy (retriable = False)
    ├── FencedError                  another instance took over the transactional id or moved a cursor
    ├── CursorAheadError             a round rolled back was committed after all: stop, restart from Kafka
    └── CheckpointError              the cursor store could not be read or written

Third-party exceptions are translated once, at the boundary where they are caught, with the cause chained.
Three attributes are the only inputs of every retry decision (:func:`borobridge.retry.retry_delay`, used by the
Boro client, the poll cycle, the MQTT relay and start-up alike): ``retriable`` says whether trying again can help at
all (if not, the bridge stops), ``retry_after`` is the other side's own floor for the wait (HTTP ``Retry-After``),
and ``permanent`` marks an error retried only at the longest backoff: Boro refuses the bridge (HTTP 401, 403, 404,
access denied) until someone fixes a setting on either side, and the bridge must not hammer it meanwhile; ``fix``
names the settings. Whoever raises an error sets them there, from what it knows (a status code, a reply).
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error borobridge raises on purpose."""

    retriable: bool = False
    retry_after: float | None = None
    kind: str = "bridge"

    @property
    def permanent(self) -> bool:
        """Trying again helps only once someone changed a setting: retried at the longest backoff only."""
        return False


class ConfigError(BridgeError):
    """The configuration is invalid; ``errors`` holds one ``path: problem`` line per fault."""

    kind = "config"

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid configuration:\n  " + "\n  ".join(errors))


class BoroError(BridgeError):
    """Boro could not be read; the stream's cursor stays where it was.

    ``fix`` is set when Boro refuses the bridge itself (its address, user or signature): the settings to check.
    Such an error is ``permanent``: asking again soon cannot help.
    """

    retriable = True
    kind = "boro"
    fix: str | None = None

    @property
    def permanent(self) -> bool:
        """Boro refuses the bridge itself (``fix`` names the settings); retrying helps only once one changed."""
        return self.fix is not None


class BoroTransportError(BoroError):
    """The request did not get an HTTP answer (refused, reset, timed out)."""

    kind = "boro_transport"


class BoroHTTPError(BoroError):
    """Boro answered with an HTTP error status."""

    kind = "boro_http"

    def __init__(self, status: int, body_excerpt: str, retry_after: float | None = None) -> None:
        self.status = status
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        self.fix = _HTTP_FIXES.get(status)
        hint = f", retry after {retry_after:g} s" if retry_after is not None else ""
        super().__init__(f"Boro answered HTTP {status}{hint}: {body_excerpt!r}")


_HTTP_FIXES = {
    401: "boro.hmac (key, access_id) and boro.user_id, against Boro's HMAC setting",
    403: "boro.user_id and boro.hmac, and any login of a proxy in front of Boro",
    404: "boro.url, which must end in /ctrl_api/v1/json",
}


class BoroDecodeError(BoroError):
    """The body is not the JSON the Control API documents."""

    kind = "boro_decode"

    def __init__(self, problem: str, body_excerpt: str) -> None:
        self.problem = problem
        self.body_excerpt = body_excerpt
        super().__init__(f"Boro reply is malformed ({problem}); body starts {body_excerpt!r}")


class BoroReplyError(BoroError):
    """A reply item reports an error, lacks its result, or cannot be matched to a call."""

    kind = "boro_reply"

    def __init__(
        self, problem: str, *, method: str | None = None, item_id: int | None = None, fix: str | None = None
    ) -> None:
        self.problem = problem
        self.method = method
        self.item_id = item_id
        self.fix = fix
        super().__init__(f"Boro {method or 'reply'} item {item_id}: {problem}")


class RecordError(BridgeError):
    """One record cannot become an event (a time that cannot be formatted); it goes to the dead-letter path."""

    kind = "record"


class SinkError(BridgeError):
    """A sink could not deliver; nothing of the batch counts as delivered."""

    retriable = True
    kind = "sink"


class KafkaDeliveryError(SinkError):
    """Kafka refused or timed out a send or a commit; the transaction was aborted."""

    kind = "kafka"


class KafkaClientError(KafkaDeliveryError):
    """A call of the Kafka client failed; ``cause`` is the client's error, which messages quote as it was."""

    def __init__(self, cause: Exception) -> None:
        self.cause = cause
        super().__init__(repr(cause))


class EventTopicError(KafkaDeliveryError):
    """The events topics of some projects cannot be created or have the wrong configuration; ``topics`` maps each
    such project to its topic. Retried for those projects alone, as the fix (a topic created by hand, an ACL, a
    policy) needs no restart."""

    kind = "event_topic"

    def __init__(self, message: str, *, topics: dict[int, str]) -> None:
        self.topics = topics
        super().__init__(message)

    @property
    def projects(self) -> list[int]:
        """The projects whose events cannot be delivered."""
        return sorted(self.topics)


class KafkaUnreachableError(KafkaDeliveryError):
    """No bootstrap server could be reached (or none answered in time) while the Kafka clients started."""


class MqttDeliveryError(SinkError):
    """An MQTT publish was not acknowledged."""

    kind = "mqtt"


class MqttRefusedError(MqttDeliveryError):
    """The broker answered a publish with an MQTT 5 failure reason code (not authorised, quota exceeded, ...)."""

    kind = "mqtt_refused"

    def __init__(self, message: str, *, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(message)


class TopicPolicyError(SinkError):
    """A topic exists with a configuration the bridge cannot work with."""

    retriable = False
    kind = "topic_policy"


class FencedError(BridgeError):
    """Another instance with the same bridge name took over, or moved a cursor meanwhile; this one must stop."""

    kind = "fenced"


class CursorAheadError(BridgeError):
    """A round given up on was committed after all, once this instance had rolled it back: it stops to restart."""

    kind = "cursor_ahead"


class CheckpointError(BridgeError):
    """The cursor store could not be read or written."""

    kind = "checkpoint"
